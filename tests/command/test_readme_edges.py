"""The README's before/after crop of an edge is what the command makes today, with and without
refinement.  Run as a script to remake the pictures: python tests/command/test_readme_edges.py"""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from needs import FIXTURES

PICTURES = {True: FIXTURES / "edge-refined.png", False: FIXTURES / "edge-not-refined.png"}
# The cat enlarged 4x (1804 x 1200): the model's 1024² mask is stretched, as on a real big photo.
SCALE = 4
CROP = (1320, 200, 1520, 400)       # an ear, its fur and a whisker, at 100%
BACKGROUND = (40, 60, 110, 255)     # a flat new background, to see the edge on


def crops(folder):
    """{refine: the crop of the cut-out over BACKGROUND}, made by the command now."""
    photo = Image.open(FIXTURES / "chelsea.png").convert("RGB")
    big = folder / "chelsea-4x.png"
    photo.resize((photo.width * SCALE, photo.height * SCALE), Image.Resampling.LANCZOS).save(big)
    made = {}
    for refine in (True, False):
        out = folder / ("refined.png" if refine else "not-refined.png")
        subprocess.run([sys.executable, "-m", "remove_background", str(big), "--model", "isnet", "-o", str(out)]
                       + ([] if refine else ["--no-refine"]), check=True)
        cut = Image.open(out).convert("RGBA").crop(CROP)
        made[refine] = Image.alpha_composite(Image.new("RGBA", cut.size, BACKGROUND), cut).convert("RGB")
    return made


def test_readme_edge_crops_are_reproduced(tmp_path, isnet_path):
    made = crops(tmp_path)
    for refine, picture in PICTURES.items():
        shown = np.asarray(Image.open(picture)).astype(int)
        assert np.abs(np.asarray(made[refine]).astype(int) - shown).max() <= 2, picture
    # The two differ: refinement changed the edge.
    assert np.abs(np.asarray(made[True]).astype(int) - np.asarray(made[False]).astype(int)).mean() > 1


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for refine, image in crops(Path(folder)).items():
            image.save(PICTURES[refine], optimize=True)
