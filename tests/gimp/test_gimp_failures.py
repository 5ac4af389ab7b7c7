"""Failures inside a real GIMP 3 (one GIMP start): each ends in an error that says what to do,
and the image stays exactly as it was."""

import pytest

from needs import need
from gimp_runs import run_gimp_script

KILL_CASES = ("helper_killed", "plug_in_killed")


@pytest.fixture(scope="module")
def results(gimp, model):
    found, _run_dir, _output = run_gimp_script(gimp, "failure_cases.py", model=model,
                                               can_kill=gimp.has_proc())
    return found


def unchanged(case):
    assert case["after"] == case["before"]


@pytest.mark.parametrize("name", ["python_missing", "not_installed"])
def test_helper_missing(results, name):
    case = results[name]
    assert case["status"] == "execution-error"
    assert "install.py" in case["message"]
    assert ("does not exist" if name == "python_missing" else "helper.json is missing") \
        in case["message"]
    unchanged(case)


def test_a_helper_of_another_version_says_run_install_again(results):
    case = results["other_version"]
    assert case["status"] == "execution-error"
    assert "but helper.json names 0.0.0-other" in case["message"]
    assert "Run `python3 install.py` again" in case["message"]
    unchanged(case)


def test_model_not_fetched_names_the_exact_command(results, gimp):
    case = results["model_missing"]
    assert case["status"] == "execution-error"
    assert "%s/bin/python -m model_fetch fetch isnet" % gimp.venv in case["message"]
    unchanged(case)


def test_helper_killed_mid_run(results):
    need("helper_killed" in results, "no /proc to find the helper in (needs unshare)")
    case = results["helper_killed"]
    assert case["killer"]["killed"] == case["killer"]["helper"]
    assert case["status"] == "execution-error"
    assert "The helper stopped unexpectedly" in case["message"]
    # Its last words on stderr are passed on (the wrapper's greeting is the first of them).
    assert "helper wrapper: starting the helper" in case["message"]
    unchanged(case)


def test_cancel_kills_the_plug_in_and_the_helper_exits_too(results):
    need("plug_in_killed" in results, "no /proc to find the helper in (needs unshare)")
    case = results["plug_in_killed"]
    assert case["killer"]["killed"] == case["killer"]["plug_in"]
    assert case["status"] != "success"
    assert case["killer"]["helper_gone"], "the helper outlived the plug-in"
    unchanged(case)


def test_indexed_image_points_to_image_mode_rgb(results):
    case = results["indexed"]
    assert case["status"] == "execution-error"
    assert "Image > Mode > RGB" in case["message"]
    unchanged(case)


def test_the_plug_in_still_works_afterwards(results):
    assert results["afterwards"]["status"] == "success", results["afterwards"]["message"]
    assert results["afterwards"]["masked"]
