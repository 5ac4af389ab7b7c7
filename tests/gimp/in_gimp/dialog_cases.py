"""Inside GIMP's real window (under Xvfb): the dialog, and its settings remembered.

1. An interactive run shows the dialog; dialog_driver.py picks Output: Selection and OK.
2. A run with the last values (what Filters > Repeat does) must use Selection again.
3. A non-interactive run with no arguments given uses the defaults: a layer mask.
"""

import json
import os
import subprocess
import sys

from support import PARAMS, PROC_ONE, RESULTS, Gimp, load, source

DRIVER = os.path.join(PARAMS["in_gimp"], "dialog_driver.py")


def run(run_mode, image):
    procedure = Gimp.get_pdb().lookup_procedure(PROC_ONE)
    config = procedure.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_selected_drawables())
    status = procedure.run(config).index(0).value_nick
    return {"status": status, "selection": Gimp.Selection.bounds(image)[1],
            "mask": image.get_layers()[0].get_mask() is not None}


def photo():
    return load(source("tests/fixtures/chelsea.png"))


image = photo()
Gimp.Display.new(image)
Gimp.displays_flush()
driver = subprocess.Popen([sys.executable, DRIVER, PARAMS["out"]])
RESULTS["interactive"] = run(Gimp.RunMode.INTERACTIVE, image)
driver.wait(timeout=180)
with open(os.path.join(PARAMS["out"], "driver.json")) as handle:
    RESULTS["driver"] = json.load(handle)
RESULTS["repeat"] = run(Gimp.RunMode.WITH_LAST_VALS, photo())
RESULTS["defaults"] = run(Gimp.RunMode.NONINTERACTIVE, photo())
