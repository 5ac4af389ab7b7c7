"""The README's before/after picture is what the command makes today, not an old or edited one."""

import subprocess
import sys

import numpy as np
from PIL import Image

from needs import FIXTURES


def test_readme_cutout_is_reproduced(tmp_path, isnet_path):
    out = tmp_path / "coffee.nobg.png"
    subprocess.run([sys.executable, "-m", "remove_background", str(FIXTURES / "coffee.png"),
                    "--model", "isnet", "-o", str(out)], check=True)
    made = np.asarray(Image.open(out)).astype(int)
    shown = np.asarray(Image.open(FIXTURES / "coffee.nobg.png")).astype(int)
    before = np.asarray(Image.open(FIXTURES / "coffee.png").convert("RGB")).astype(int)
    assert made.shape == shown.shape == before.shape[:2] + (4,)
    assert np.array_equal(made[..., :3], before)          # colours untouched: straight alpha
    assert np.abs(made[..., 3] - shown[..., 3]).max() <= 1
    assert 0.2 < (shown[..., 3] < 128).mean() < 0.8       # a real cut-out, not all kept or all gone
