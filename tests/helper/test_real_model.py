"""The real ISNet weights (IMG.LY's npm package, via model_fetch) on a CC0 photo of a cat."""

import numpy as np
import pytest

from needs import FIXTURES
from remove_background.command import cli
from remove_background.helper import engine


@pytest.fixture(scope="module")
def chelsea_mask(isnet_path):
    runner = engine.load("isnet")                       # through model_fetch, as users get it
    assert str(runner.path) == str(isnet_path)
    pixels = cli.pixels_of(cli.load_image(FIXTURES / "chelsea.png"))
    return pixels, runner.mask(pixels, depth=2).astype(np.float64) / 65535


def test_cat_kept_background_removed(chelsea_mask):
    pixels, mask = chelsea_mask
    assert mask.shape == pixels.shape[:2] == (300, 451)
    assert mask[100:200, 150:300].min() > 0.9           # the cat's face and chest
    for name, corner in (("top left", mask[:30, :30]), ("top right", mask[:30, -30:]),
                         ("bottom right", mask[-30:, -30:])):
        assert corner.max() < 0.1, name


def test_serve_gives_the_same_mask(chelsea_mask, isnet_path):
    import sys

    from remove_background.wire.client import HelperClient

    pixels, mask = chelsea_mask
    height, width = mask.shape
    rgba = np.dstack([pixels, np.full((height, width, 1), 255, np.uint8)])
    with HelperClient([sys.executable, "-m", "remove_background.helper.serve"]) as helper:
        assert helper.load("isnet")["model"] == "isnet"
        data = helper.process(width, height, 4, rgba.tobytes(), mask_depth=2)
    served = np.frombuffer(data, "<u2").reshape(height, width).astype(np.float64) / 65535
    assert np.abs(served - mask).max() < 1e-3


def test_a_model_damaged_and_touched_back_is_never_loaded(isnet_path, tmp_path):
    """The issue's reproduction: bytes overwritten mid-file, mtime restored with `touch -r`, a saved
    graph beside it.  The command refuses the model (naming the fix) instead of writing empty cut-outs."""
    import os
    import shutil
    import subprocess
    import sys

    import model_fetch

    cache = tmp_path / "models"
    store = model_fetch.Store(cache_dir=cache)
    store.import_file("isnet", isnet_path)                     # a copy: the shared cache is not touched
    model = store.installed_path("isnet")
    env = dict(os.environ, REMOVE_BACKGROUND_MODELS=str(cache))
    shutil.copy(FIXTURES / "chelsea.png", tmp_path / "cat.png")
    command = [sys.executable, "-m", "remove_background", str(tmp_path / "cat.png"), "--threads", "2"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert any(store.derived_dir("isnet").glob("*.onnx"))     # the saved graph is there
    (tmp_path / "cat.nobg.png").unlink()
    before = model.stat()
    with open(model, "r+b") as f:
        f.seek(before.st_size // 2)
        f.write(b"\0" * 4096)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 2, second.stderr
    assert "changed since it was verified" in second.stderr and "model_fetch fetch isnet" in second.stderr
    assert "Traceback" not in second.stderr
    assert not (tmp_path / "cat.nobg.png").exists()
    assert not model.exists() and not store.derived_dir("isnet").exists()
