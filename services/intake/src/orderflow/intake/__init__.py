"""Intake: every channel's orders in, normalised to the canonical order, checked, deduplicated."""
