"""Runs inside GIMP 3 (python-fu-eval): what the in-GIMP test scripts share.

gimp3.Gimp3.run_script() starts GIMP with ``support.main(PARAMS_FILE)``; main() runs the
script named there with PARAMS, RESULTS and these helpers, then writes RESULTS as JSON.
Pixels go to files in the run folder (dump()), to be compared by the tests with numpy.
"""

import hashlib
import json
import os
import runpy
import traceback

import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp
gi.require_version('Gegl', '0.4')
from gi.repository import Gegl
from gi.repository import Gio

PROC_ONE = "plug-in-remove-background"
PROC_ALL = "plug-in-remove-background-all-images"

PARAMS = {}
RESULTS = {}


def main(params_file):
    with open(params_file) as handle:
        PARAMS.update(json.load(handle))
    RESULTS["_gimp_version"] = Gimp.version()
    try:
        runpy.run_path(PARAMS["script"], run_name="__in_gimp__")
    except BaseException:  # noqa: BLE001 - recorded for the test to show
        RESULTS["_crashed"] = traceback.format_exc()
    finally:
        with open(os.path.join(PARAMS["out"], "results.json"), "w") as handle:
            json.dump(RESULTS, handle, indent=1, default=str)


def source(relative):
    return os.path.join(PARAMS["src"], relative)


def load(path):
    """Opens an image file.  (Unlike File > Open, GIMP 3.0's file-load leaves it untitled;
    GIMP 3.2's gives it its file.)"""
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


def run_procedure(name, image=None, drawables=None, **arguments):
    """Runs a procedure non-interactively; returns (status name, error message, value array)."""
    procedure = Gimp.get_pdb().lookup_procedure(name)
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    if image is not None:
        config.set_property("image", image)
    if drawables is not None:
        config.set_core_object_array("drawables", drawables)
    for key, value in arguments.items():
        config.set_property(key.replace("_", "-"), value)
    values = procedure.run(config)
    status = values.index(0)
    message = ""
    if status != Gimp.PDBStatusType.SUCCESS:
        message = Gimp.get_pdb().get_last_error() or ""
    return status.value_nick, message, values


def pixels(drawable, format_name=None, rect=None):
    """The drawable's pixels as bytes; format None: its own (for byte-exact comparisons)."""
    if rect is None:
        rect = (0, 0, drawable.get_width(), drawable.get_height())
    return drawable.get_buffer().get(Gegl.Rectangle.new(*rect), 1.0, format_name,
                                     Gegl.AbyssPolicy.NONE)


def digest(data):
    return hashlib.sha256(data).hexdigest()


def dump(name, data):
    """Writes bytes into the run folder; returns the file name the tests open."""
    with open(os.path.join(PARAMS["out"], name), "wb") as handle:
        handle.write(data)
    return name


def state(image):
    """Everything about an image the plug-in could change, as comparable values."""
    _ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    layers = []
    for layer in all_layers(image):
        mask = layer.get_mask()
        _ok, off_x, off_y = layer.get_offsets()
        layers.append({"name": layer.get_name(), "offsets": [off_x, off_y],
                       "size": [layer.get_width(), layer.get_height()],
                       "pixels": digest(pixels(layer)),
                       "mask": digest(pixels(mask)) if mask is not None else None})
    return {"layers": layers, "channels": len(image.get_channels()),
            "selection": [non_empty, x1, y1, x2, y2],
            "selection_pixels": digest(pixels(image.get_selection())),
            "dirty": image.is_dirty()}


def all_layers(image):
    found = []

    def walk(layers):
        for layer in layers:
            found.append(layer)
            if isinstance(layer, Gimp.GroupLayer):
                walk(layer.get_children())

    walk(image.get_layers())
    return found
