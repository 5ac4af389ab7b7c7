"""How a test says it needs something: ``need(condition, reason)``.

A test that needs something absent (GIMP 3, npm, the real model) skips with the reason,
except under CI (CI=true), where everything must have been provided and it fails instead.

A module of its own, not conftest.py: pytest loads every test folder's conftest.py under the
one module name "conftest", so ``from conftest import ...`` would get whichever it loaded last.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
UNDER_CI = os.environ.get("CI") == "true"


def need(condition, reason):
    """Skips the test (fails it under CI) unless ``condition`` holds."""
    if condition:
        return
    if UNDER_CI:
        pytest.fail("CI must provide this, but it is missing: " + reason, pytrace=False)
    pytest.skip(reason)
