"""Hypothesis profiles for the property tests, chosen with ``HYPOTHESIS_PROFILE``:

- (unset) random examples on every run: how new bad inputs get found locally;
- ``ci``: derandomized, the same examples on every run, so CI's verdict depends on the code only
  (``.ci/run`` selects it); a failure found locally becomes an ``@example`` there;
- ``hunt``: ten times the examples, random, to look for trouble on purpose.

``examples(n)`` in ``strategies`` scales the per-test budgets for ``hunt``."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("hunt", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
