"""Running an in_gimp/ script and reading what it recorded: raw pixel dumps, and the masks
`remove-background` makes of the same pixels, to compare with numpy.
"""

import subprocess

import numpy as np
import pytest
from PIL import Image

MODEL = "isnet"


def load_raw(path, width, height, channels, dtype=np.uint8):
    data = np.fromfile(path, dtype=dtype)
    assert data.size == width * height * channels, (path, data.size, width, height, channels)
    return data.reshape(height, width, channels) if channels > 1 else data.reshape(height, width)


CHANNELS = {"Y' u8": 1, "Y'A u8": 2, "R'G'B' u8": 3, "R'G'B'A u8": 4}
PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def cli_masks(gimp, run_dir, cases):
    """The `remove-background --mask-only` masks of the pixels each case sent, as uint8 arrays.

    ``cases``: {name: result} with "in", "in_format" and "in_size".  One CLI run for all.
    """
    inputs = run_dir / "cli-in"
    outputs = run_dir / "cli-out"
    inputs.mkdir(exist_ok=True)
    outputs.mkdir(exist_ok=True)
    for name, case in cases.items():
        channels = CHANNELS[case["in_format"]]
        width, height = case["in_size"]
        pixels = load_raw(run_dir / case["in"], width, height, channels)
        Image.fromarray(pixels, PIL_MODES[channels]).save(inputs / (name + ".png"))
    inner = gimp.runs + "/" + run_dir.name
    gimp.run([gimp.venv + "/bin/remove-background", inner + "/cli-in", "--mask-only",
              "--model", MODEL, "-o", inner + "/cli-out"], timeout=900)
    return {name: np.asarray(Image.open(outputs / (name + ".mask.png")))
            for name in cases}


def run_gimp_script(gimp, script, gui=False, env=None, **params):
    try:
        return gimp.run_script(script, params, timeout=300 if gui else 900, gui=gui, env=env)
    except subprocess.TimeoutExpired as error:
        pytest.fail("GIMP did not finish %s in time: %s" % (script, error))
