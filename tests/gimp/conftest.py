"""The in-GIMP tests' fixtures: a real GIMP with this checkout's plug-in installed, in every
version of gimp3.VERSIONS (GIMP 3.0 and 3.2): each test runs once in each, named [gimp3.0] or
[gimp3.2].  A test meant for one version only says so with @pytest.mark.gimp_only("3.2").

Each test module runs its in_gimp/ script in one GIMP start (a module-scoped fixture) and
asserts on what the script recorded (gimp_runs.py reads it).
"""

import functools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gimp3
from gimp_runs import MODEL
from needs import need


def pytest_configure(config):
    config.addinivalue_line("markers", "gimp_only(*versions): the test runs in these GIMP versions only")


@functools.lru_cache(maxsize=None)
def prepared_gimp(number):
    """Once per test session and version, however many modules ask."""
    try:
        return gimp3.prepare(number), None
    except gimp3.Unavailable as reason:
        return None, str(reason)


@pytest.fixture(scope="session", params=list(gimp3.VERSIONS), ids=lambda number: "gimp" + number)
def gimp(request):
    prepared, reason = prepared_gimp(request.param)
    need(prepared is not None, "no %r to test in: %s" % (gimp3.VERSIONS[request.param], reason))
    return prepared


@pytest.fixture(autouse=True)
def only_in_its_gimp_versions(request):
    marker = request.node.get_closest_marker("gimp_only")
    if marker is not None and "gimp" in request.fixturenames:
        number = request.node.callspec.params["gimp"]
        if number not in marker.args:
            pytest.skip("for GIMP %s only" % " and ".join(marker.args))


@pytest.fixture(scope="session")
def model(gimp):
    """The real model is in GIMP's model folder (linked from this machine's model cache)."""
    found = any(gimp.host_path(gimp.models).rglob("%s.onnx" % MODEL))
    need(found, "the %s model is not downloaded here (python -m model_fetch fetch %s)"
         % (MODEL, MODEL))
    return MODEL
