"""The Model choice in a real GIMP 3 offers every model, the installed ones first, u2netp (fetched from
PyPI) among them, and a run with it gives the engine's mask."""

import json
from pathlib import Path

import numpy as np
import pytest

from needs import FIXTURES, need
from gimp_runs import load_raw, run_gimp_script

ROOT = Path(__file__).resolve().parent.parent.parent
REGISTRY = json.loads((ROOT / "model_fetch" / "registry.json").read_text())


def installed_in(gimp, name):
    found = list(gimp.host_path(gimp.models).rglob("%s.onnx" % name))
    return found[0] if found else None


@pytest.fixture(scope="module")
def run(gimp):
    need(installed_in(gimp, "u2netp"), "the u2netp model is not downloaded here (python -m model_fetch fetch u2netp)")
    results, run_dir, _output = run_gimp_script(gimp, "model_choice_cases.py")
    assert "_crashed" not in results, results["_crashed"]
    return results, run_dir


def test_the_choice_offers_every_model_the_installed_ones_first(run, gimp):
    # GIMP keeps the choice from the plug-in's registration: a model fetched after it must be there too.
    results, _run_dir = run
    installed = [name for name in REGISTRY["models"] if installed_in(gimp, name)]
    assert "u2netp" in installed and "isnet" in installed
    assert results["choice"]["nicks"] == installed + [name for name in REGISTRY["models"] if name not in installed]
    assert results["choice"]["default"] == "isnet"


def test_u2netp_runs_in_gimp_and_gives_the_engines_mask(run, gimp):
    from remove_background.command import cli
    from remove_background.helper import engine

    results, run_dir = run
    case = results["u2netp"]
    assert case["status"] == "success", case["message"]
    width, height = case["size"]
    mask = load_raw(run_dir / case["mask"], width, height, 1)
    expected = engine.Engine(installed_in(gimp, "u2netp"), REGISTRY["models"]["u2netp"]["preprocess"],
                             name="u2netp").mask(cli.pixels_of(cli.load_image(FIXTURES / "chelsea.png")))
    assert np.abs(mask.astype(int) - expected.astype(int)).max() <= 1
    assert mask[100:200, 150:300].mean() > 240 and mask[:30, -30:].max() < 26
