"""Test support other packages' tests import: the real infrastructure (embedded, containers or
external), the running pipeline, and a reader of every topic."""
