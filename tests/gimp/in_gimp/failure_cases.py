"""Inside GIMP: every way Filters > Remove Background can fail must leave the image as it was.

RESULTS[case] = {"status", "message", "before", "after"} (+ "killer" for the kill cases).
"""

import json
import os
import subprocess
import sys

from support import PARAMS, PROC_ONE, RESULTS, Gimp, load, run_procedure, source, state
import helper_config

MODEL = "isnet"
KILLER = os.path.join(PARAMS["in_gimp"], "killer.py")
# CPU seconds: the helper that lists the models uses a few hundredths; the one that works
# (numpy and onnxruntime imported, the model loaded, then inference) several.
KILL_AT_CPU_SECONDS = 0.8


def attempt(name, image=None, killer=None, **arguments):
    if image is None:
        image = load(source("tests/fixtures/chelsea.png"))
    image.clean_all()
    before = state(image)
    watcher = None
    if killer is not None:
        report = os.path.join(PARAMS["out"], name + ".killer.json")
        watcher = subprocess.Popen([sys.executable, KILLER, killer, str(KILL_AT_CPU_SECONDS), report,
                                    PARAMS["plugin_dir"]])
    status, message, _values = run_procedure(PROC_ONE, image, image.get_selected_layers(),
                                             model=MODEL, **arguments)
    RESULTS[name] = {"status": status, "message": message, "before": before,
                     "after": state(image)}
    if watcher is not None:
        watcher.wait(timeout=180)
        with open(report) as handle:
            RESULTS[name]["killer"] = json.load(handle)
    image.delete()


config = helper_config.installed()

with helper_config.replaced(dict(config, python="/nonexistent/venv/bin/python")):
    attempt("python_missing")

with helper_config.replaced(None):
    attempt("not_installed")

# A plug-in installed with another version than the helper's venv now holds.
with helper_config.replaced(dict(config, version="0.0.0-other")):
    attempt("other_version")

empty = os.path.join(PARAMS["out"], "no-models")
os.makedirs(empty)
with helper_config.replaced(dict(config, env={"REMOVE_BACKGROUND_MODELS": empty})):
    attempt("model_missing")

if PARAMS["can_kill"]:
    # A run's own helper, as without a warm helper (warm_cases.py kills and cancels that one).
    with helper_config.replaced(dict(config, warm_idle_seconds=0)):
        # The wrapper says something on stderr first, so the helper has last words to report.
        with helper_config.logging_wrapper():
            attempt("helper_killed", killer="helper")
        attempt("plug_in_killed", killer="plug-in")

indexed = load(source("tests/fixtures/astronaut.png"))
indexed.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE,
                        255, False, False, "")
attempt("indexed", image=indexed)

# After all that, the plug-in still works.
image = load(source("tests/fixtures/chelsea.png"))
status, message, _values = run_procedure(PROC_ONE, image, image.get_selected_layers(), model=MODEL)
RESULTS["afterwards"] = {"status": status, "message": message,
                         "masked": image.get_layers()[0].get_mask() is not None}
