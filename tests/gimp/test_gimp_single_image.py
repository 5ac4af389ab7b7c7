"""Filters > Remove Background inside a real GIMP 3, on every kind of layer (one GIMP start).

The masks are compared with what `remove-background --mask-only` makes of the very pixels
the plug-in sent, with the real ISNet model.
"""

import numpy as np
import pytest

from gimp_runs import cli_masks, load_raw, run_gimp_script
from remove_background.wire import protocol

MASKED_CASES = ("rgb", "offset", "grey", "grey_alpha", "u16", "float", "replace", "selection",
                "group")
SELECTION_CASES = ("as_selection", "selection_as_selection")


@pytest.fixture(scope="module")
def run(gimp, model):
    results, run_dir, output = run_gimp_script(gimp, "single_cases.py", model=model)
    cases = {name: results[name] for name in MASKED_CASES + SELECTION_CASES
             if "in" in results.get(name, {})}
    return results, run_dir, cli_masks(gimp, run_dir, cases)


def succeeded(results, name):
    case = results[name]
    assert case["status"] == "success", "%s: %s" % (name, case["message"])
    return case


def mask(run, name):
    results, run_dir, _cli = run
    case = results[name]
    assert "mask" in case, "%s: the layer has no mask" % name
    width, height = case["size"]
    if name in ("u16", "float"):
        return load_raw(run_dir / case["mask"], width, height, 1, np.uint16)
    return load_raw(run_dir / case["mask"], width, height, 1)


def max_difference(a, b):
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


def only_the_mask_changed(case, layer_index=0):
    """The image after = before, but for the one layer's mask (and being dirty)."""
    before, after = case["before"], case["after"]
    assert case["layer_pixels_after"] == case["layer_pixels_before"]
    assert after["dirty"] and not before["dirty"]
    for number, (old, new) in enumerate(zip(before["layers"], after["layers"])):
        if number != layer_index:
            assert new == old, "layer %s changed" % old["name"]
        else:
            assert {k: v for k, v in new.items() if k != "mask"} == \
                   {k: v for k, v in old.items() if k != "mask"}
            assert new["mask"] is not None and new["mask"] != old["mask"]
    assert len(after["layers"]) == len(before["layers"])
    assert after["selection"] == before["selection"]
    assert after["channels"] == before["channels"]


def test_rgb_photo_gains_the_cli_mask_and_keeps_its_pixels(run):
    results, _run_dir, cli = run
    case = succeeded(results, "rgb")
    only_the_mask_changed(case)
    assert max_difference(mask(run, "rgb"), cli["rgb"]) <= 1


def test_real_isnet_keeps_the_cat_and_removes_the_background_corners(run):
    results, _run_dir, _cli = run
    succeeded(results, "rgb")
    found = mask(run, "rgb").astype(float) / 255
    # The cat fills the left and the bottom of the photo; the right-hand corners are
    # the blurred room behind it.
    assert found[:40, -40:].mean() < 0.05
    assert found[-40:, -40:].mean() < 0.05
    assert found[100:250, 150:300].mean() > 0.9      # its face
    assert found[-40:, :40].mean() > 0.7             # its chest


def test_the_composite_shows_the_mask_as_opacity(run):
    results, run_dir, _cli = run
    found = mask(run, "rgb")
    alpha = load_raw(run_dir / results["rgb"]["alpha"], 451, 300, 1)
    assert max_difference(alpha, found) <= 1
    half = found == 128
    assert half.any(), "no mask value 128 in the photo's mask to check"
    assert np.all(np.abs(alpha[half] / 255.0 - 0.5) <= 0.01)


@pytest.mark.parametrize("name", ["gradient8", "gradient16", "gradient_float"])
def test_a_mask_value_composites_at_that_opacity(run, name):
    results, run_dir, _cli = run
    wanted = np.arange(256, dtype=float) / 255
    alpha = load_raw(run_dir / results[name]["alpha"], 256, 8, 1) / 255.0
    alpha16 = load_raw(run_dir / results[name]["alpha16"], 256, 8, 1, np.uint16) / 65535.0
    assert abs(alpha[0, 128] - 0.5) <= 0.01           # 128 -> 50 % +- 1 %
    assert np.all(np.abs(alpha - wanted) <= 0.01)
    assert np.all(np.abs(alpha16 - wanted) <= 0.0005)


def test_offset_smaller_rgba_layer(run):
    results, _run_dir, cli = run
    case = succeeded(results, "offset")
    assert case["size"] == [400, 300]
    only_the_mask_changed(case, layer_index=0)
    assert case["after"]["layers"][0]["offsets"] == [170, 130]
    assert max_difference(mask(run, "offset"), cli["offset"]) <= 1


@pytest.mark.parametrize("name", ["grey", "grey_alpha"])
def test_grey_image(run, name):
    results, _run_dir, cli = run
    case = succeeded(results, name)
    only_the_mask_changed(case)
    assert max_difference(mask(run, name), cli[name]) <= 1


@pytest.mark.parametrize("name", ["u16", "float"])
def test_high_bit_depth_gets_a_16_bit_mask_without_banding(run, name):
    results, _run_dir, cli = run
    case = succeeded(results, name)
    only_the_mask_changed(case)
    found = mask(run, name)
    assert max_difference(np.round(found / 257.0), cli[name]) <= 1
    soft = found[(found > 0) & (found < 65535)]
    assert soft.size > 1000
    # An 8-bit mask scaled up would be all multiples of 257.
    assert np.mean(soft % 257 != 0) > 0.5


def test_an_existing_mask_is_replaced(run):
    results, _run_dir, cli = run
    case = succeeded(results, "replace")
    assert case["before"]["layers"][0]["mask"] is not None
    only_the_mask_changed(case)
    assert max_difference(mask(run, "replace"), cli["replace"]) <= 1


def test_a_selection_limits_the_area_and_the_mask(run):
    results, run_dir, cli = run
    case = succeeded(results, "selection")
    only_the_mask_changed(case)
    x1, y1, x2, y2 = case["bounds"]
    # The bounds and a margin went to the model, as the command's --box does (protocol.box_region).
    left, top, right, bottom = protocol.box_region(451, 300, (x1, y1, x2 - x1, y2 - y1))
    assert case["in_size"] == [right - left, bottom - top] and (right - left) * (bottom - top) < 451 * 300
    assert (left, top) < (x1, y1)
    selection = load_raw(run_dir / case["selection_mask"], 451, 300, 1)
    found = mask(run, "selection")
    assert not found[selection == 0].any(), "the mask is not black outside the selection"
    expected = np.zeros_like(found)
    expected[y1:y2, x1:x2] = np.minimum(cli["selection"][y1 - top:y2 - top, x1 - left:x2 - left],
                                        selection[y1:y2, x1:x2])
    assert max_difference(found, expected) <= 1


def test_output_as_selection(run):
    results, run_dir, cli = run
    case = succeeded(results, "as_selection")
    assert "mask" not in case
    before, after = case["before"], case["after"]
    assert after["layers"] == before["layers"]
    assert after["channels"] == before["channels"]
    assert after["selection"][0] and not before["selection"][0]
    selection = load_raw(run_dir / case["selection_mask"], 451, 300, 1)
    assert max_difference(selection, cli["as_selection"]) <= 1


def test_output_as_selection_within_a_selection(run):
    results, run_dir, cli = run
    case = succeeded(results, "selection_as_selection")
    assert "mask" not in case
    assert case["after"]["layers"] == case["before"]["layers"]
    x1, y1, x2, y2 = case["bounds"]
    old = load_raw(run_dir / case["old_selection"], 451, 300, 1)
    found = load_raw(run_dir / case["selection_mask"], 451, 300, 1)
    expected = np.zeros_like(found)
    left, top, _right, _bottom = protocol.box_region(451, 300, (x1, y1, x2 - x1, y2 - y1))
    expected[y1:y2, x1:x2] = np.minimum(
        cli["selection_as_selection"][y1 - top:y2 - top, x1 - left:x2 - left], old[y1:y2, x1:x2])
    assert max_difference(found, expected) <= 1


def test_layer_group_uses_what_the_group_shows(run):
    results, _run_dir, cli = run
    case = succeeded(results, "group")
    only_the_mask_changed(case)
    assert max_difference(mask(run, "group"), cli["group"]) <= 1


def test_text_layer_stays_text_and_gains_a_mask(run):
    results, _run_dir, _cli = run
    case = succeeded(results, "text")
    assert results["text"]["still_text"]
    only_the_mask_changed(case, layer_index=0)
    assert mask(run, "text").shape == tuple(reversed(case["size"]))


def test_it_ran_in_the_gimp_version_it_is_named_for(run, gimp):
    results, _run_dir, _cli = run
    assert results["_gimp_version"].split(".")[:2] == gimp.version.number.split(".")
