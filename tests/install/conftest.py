"""Fixtures of the install tests."""

import pytest

from install_support import seed_models


@pytest.fixture(scope="module")
def seeded_models(tmp_path_factory):
    """A model folder holding the real model, or None when this machine has none."""
    folder = tmp_path_factory.mktemp("models")
    return folder if seed_models(folder) else None
