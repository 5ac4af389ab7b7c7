"""Refine Layer Mask, Decontaminate colours and the selection's box, inside a real GIMP's window.

The results are recomputed on this side with the helper's own code (snap.snap,
decontaminate.decontaminate) from the pixels and the mask GIMP had, and the box's mask is
compared with what `remove-background --box` makes of the same photo.
"""

import numpy as np
import pytest

from gimp_runs import load_raw, run_gimp_script
from needs import need
from remove_background.helper import decontaminate, snap

GUI_TOOLS = ("Xvfb", "xdotool")
EDGE = 150


@pytest.fixture(scope="module")
def run(gimp, model):
    missing = [tool for tool in GUI_TOOLS if not gimp.has_tool(tool)]
    need(not missing, "to drive GIMP's window the tests need %s" % ", ".join(missing))
    results, run_dir, _output = run_gimp_script(gimp, "refine_cases.py", gui=True, model=model)
    assert "_crashed" not in results, results["_crashed"]
    return results, run_dir


def case_of(run, name):
    results, _run_dir = run
    case = results[name]
    assert case["status"] == "success", "%s: %s" % (name, case["message"])
    return case


def arrays(run, files):
    _results, run_dir = run
    width, height = files["size"]
    found = load_raw(run_dir / files["pixels"], width, height, 3)
    mask = load_raw(run_dir / files["mask"], width, height, 1) if files["mask"] else None
    return found, mask


def close(a, b, tolerance=1):
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max()) <= tolerance


def test_refine_layer_mask_snaps_the_mask_as_painted(run):
    case = case_of(run, "painted")
    assert case["generate_status"] == "success", case["generate_message"]
    assert case["painted_differs"], "the brush stroke did not change the mask"
    photo, painted = arrays(run, case["before_files"])
    after, snapped = arrays(run, case["after_files_0"])
    assert np.array_equal(after, photo), "the pixels changed"
    assert len(case["layers"]) == 1
    assert not np.array_equal(snapped, painted)
    assert close(snapped, snap.snap(photo, painted))


def test_snapping_moves_an_offset_painted_edge_onto_the_photo_edge(run):
    case = case_of(run, "offset")
    photo, painted = arrays(run, case["before_files"])
    _after, snapped = arrays(run, case["after_files_0"])
    assert ((painted >= 128).sum(axis=1) == EDGE + 12).all()
    assert (np.abs((snapped >= 128).sum(axis=1) - EDGE) <= 1).all()


@pytest.mark.parametrize("name", ["refine_decontaminate", "dialog_decontaminate"])
def test_decontamination_adds_a_copy_above_and_hides_the_original(run, name):
    case = case_of(run, name)
    top, bottom = case["layers"]
    assert top["visible"] and not bottom["visible"]
    assert top["name"].endswith("(decontaminated)")
    assert top["mask"] is not None and top["mask"] == bottom["mask"]
    photo, _mask = arrays(run, case["before_files"])
    colours, mask = arrays(run, case["after_files_0"])
    original, _same = arrays(run, case["after_files_1"])
    assert np.array_equal(original, photo), "the original's pixels changed"
    soft = (mask > 0) & (mask < 255)
    assert soft.any() and not np.array_equal(colours, photo)
    assert np.array_equal(colours[~soft], photo[~soft]), "pixels outside the soft edge changed"
    assert np.array_equal(colours, decontaminate.decontaminate(photo, mask))


@pytest.mark.parametrize("name", ["painted", "offset", "refine_decontaminate", "dialog_decontaminate"])
def test_one_ctrl_z_undoes_it(run, name):
    case = case_of(run, name)
    assert case["window"], "the image's window was not found"
    assert case["undone"], (case["before"], case["after_undo"])


def test_the_selection_path_matches_the_command_box(run, gimp):
    results, run_dir = run
    case = results["box"]
    assert case["status"] == "success", case["message"]
    inner = gimp.runs + "/" + run_dir.name
    gimp.run([gimp.venv + "/bin/remove-background", case["photo"], "--mask-only", "--model", "isnet",
              "--box", ",".join(str(v) for v in case["box"]), "-o", inner + "/box.cli.png"], timeout=900)
    from PIL import Image

    command = np.asarray(Image.open(run_dir / "box.cli.png"))
    found = load_raw(run_dir / case["mask"], command.shape[1], command.shape[0], 1)
    x, y, w, h = case["box"]
    assert not found[:y].any() and not found[:, :x].any() and not found[y + h:].any()
    assert found[y:y + h, x:x + w].mean() > 20, "no subject found in the box"
    assert close(found, command)
