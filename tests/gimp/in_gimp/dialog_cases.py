"""Inside GIMP's real window (under Xvfb): the dialog, and its settings remembered.

1. An interactive run shows the dialog; dialog_driver.py picks Output: Selection and OK.
2. A run with the last values (what Filters > Repeat does) must use Selection again.
3. A non-interactive run with no arguments given uses the defaults: a layer mask.
4. One undo step per image: on a layer that already has a mask, the run (which removes the
   old mask and adds its own) is undone by a single Ctrl+Z pressed in the image's window.
"""

import json
import os
import subprocess
import sys

from support import PARAMS, PROC_ONE, RESULTS, Gimp, digest, load, pixels, run_procedure, source
from window import undo_once_in_the_window

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


def layer_state(layer):
    mask = layer.get_mask()
    return {"pixels": digest(pixels(layer)),
            "mask": digest(pixels(mask)) if mask is not None else None}


image = photo()
layer = image.get_layers()[0]
# An old mask of its own: the layer's gray values, unlike any mask the plug-in makes.
layer.add_mask(layer.create_mask(Gimp.AddMaskType.COPY))
Gimp.Display.new(image)
Gimp.displays_flush()
before = layer_state(layer)
status, message, _values = run_procedure(PROC_ONE, image, [layer])
undo = {"status": status, "message": message, "before": before, "filtered": layer_state(layer)}
undo.update(undo_once_in_the_window(image, lambda image: layer_state(image.get_layers()[0])))
RESULTS["undo"] = undo
