"""Filters > Remove Background in All Open Images inside a real GIMP 3 (one GIMP start).

Three open images, one of them indexed: two get masks, the indexed one is reported, and
nothing else in any of them changes.  One helper process does the whole batch.
"""

import numpy as np
import pytest

from gimp_runs import cli_masks, load_raw, run_gimp_script


@pytest.fixture(scope="module")
def run(gimp, model):
    results, run_dir, _output = run_gimp_script(gimp, "batch_cases.py", model=model)
    cli = cli_masks(gimp, run_dir, {name: results[name] for name in ("cat", "cup")})
    return results, run_dir, cli


def test_the_batch_succeeds_and_reports_each_image(run, gimp):
    results, _run_dir, _cli = run
    batch = results["batch"]
    assert batch["status"] == "success", batch["message"]
    assert (batch["done"], batch["failed"]) == (2, 1)
    lines = batch["summary"].splitlines()
    assert "2 image(s) done, 1 failed" in lines[0]
    failed = [line for line in lines[1:] if "done" not in line.split(":", 1)[1]]
    # Each image is named by its file; GIMP 3.0's file-load leaves an image untitled, and the
    # summary names it as GIMP's title does: [Untitled]-ID.
    if gimp.version.number == "3.0":
        name = "[Untitled]-%d" % results["indexed"]["id"]
    else:
        name = "astronaut.png"
    assert len(failed) == 1 and failed[0].startswith("  %s:" % name), failed
    assert "Image > Mode > RGB" in failed[0]


@pytest.mark.parametrize("name", ["cat", "cup"])
def test_the_selected_layer_of_each_rgb_image_is_masked_and_nothing_else_changes(run, name):
    results, run_dir, cli = run
    case = results[name]
    before, after = case["before"], case["after"]
    assert after["dirty"]
    top_before, top_after = before["layers"][0], after["layers"][0]
    assert top_before["mask"] is None and top_after["mask"] is not None
    assert {k: v for k, v in top_after.items() if k != "mask"} == \
           {k: v for k, v in top_before.items() if k != "mask"}
    assert after["layers"][1:] == before["layers"][1:]
    assert after["selection"] == before["selection"]
    width, height = case["size"]
    mask = load_raw(run_dir / case["mask"], width, height, 1)
    assert int(np.abs(mask.astype(int) - cli[name].astype(int)).max()) <= 1


def test_the_indexed_image_is_untouched(run):
    results, _run_dir, _cli = run
    case = results["indexed"]
    assert case["after"] == case["before"]
    assert "mask" not in case


def test_one_helper_process_serves_the_whole_batch(run):
    results, _run_dir, _cli = run
    # One start lists the models for the procedure's arguments; one does every image.
    assert results["batch"]["helper_starts"] == 2
