"""Inside GIMP: where the time of Filters > Remove Background goes on a big photo.

1. The whole procedure, as a user runs it (plug-in start, helper start, model load, all).
2. The same steps one by one with the plug-in's own functions, timed apart: pixel export,
   the pipe each way, the helper's stages (from its progress messages), writing the mask.
3. All Open Images over five copies: wall time and helper processes started.
"""

import importlib.util
import os
import time

from support import (PARAMS, PROC_ALL, PROC_ONE, RESULTS, Gimp, load, run_procedure)
import helper_config

MODEL = PARAMS.get("model", "isnet")
RUNS = PARAMS.get("runs", 2)

spec = importlib.util.spec_from_file_location(
    "remove_background_plugin", os.path.join(PARAMS["plugin_dir"], "remove-background.py"))
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)

image = load(PARAMS["photo"])
layer = image.get_layers()[0]
RESULTS["photo"] = [layer.get_width(), layer.get_height()]

# 1. The whole procedure.
walls = []
for _ in range(RUNS):
    started = time.monotonic()
    status, message, _values = run_procedure(PROC_ONE, image, [layer], model=MODEL)
    walls.append(time.monotonic() - started)
    assert status == "success", message
    layer.remove_mask(Gimp.MaskApplyMode.DISCARD)
RESULTS["procedure_seconds"] = walls

# 2. Step by step.
steps = []
for _ in range(RUNS):
    step = {}
    started = time.monotonic()
    helper = plugin.HelperClient.from_config(PARAMS["plugin_dir"])
    helper.start()
    helper.load(MODEL)
    step["helper_start_and_load"] = time.monotonic() - started

    jobs = plugin.plan(image, [layer])
    job = jobs[0]
    started = time.monotonic()
    channels, pixels = plugin.read_pixels(job)
    step["pixel_export"] = time.monotonic() - started

    marks = []
    sent = time.monotonic()
    job.mask = helper.process(job.width, job.height, channels, pixels, mask_depth=1,
                              on_progress=lambda stage, fraction: marks.append(
                                  (stage, fraction, time.monotonic())))
    arrived = time.monotonic()
    helper.close()
    first = {}
    for stage, _fraction, at in marks:
        first.setdefault(stage, at)
    last_mark = marks[-1][2]
    step["pipe_to_helper"] = first["received"] - sent
    step["preprocess"] = first["inference"] - first["preprocess"]
    step["inference"] = first["postprocess"] - first["inference"]
    step["postprocess"] = last_mark - first["postprocess"]
    step["pipe_from_helper"] = arrived - last_mark
    step["helper_total"] = arrived - sent

    started = time.monotonic()
    plugin.apply(image, jobs, "mask")
    step["writing_the_mask"] = time.monotonic() - started
    layer.remove_mask(Gimp.MaskApplyMode.DISCARD)
    steps.append(step)
RESULTS["steps"] = steps
image.delete()

# 3. A batch of five.
for _ in range(5):
    load(PARAMS["photo"])
with helper_config.logging_wrapper() as starts:
    started = time.monotonic()
    status, message, values = run_procedure(PROC_ALL, model=MODEL)
    RESULTS["batch"] = {"seconds": time.monotonic() - started, "status": status,
                        "message": message, "helper_starts": starts.count(),
                        "done": values.index(1) if status == "success" else None}
