"""Inside GIMP: where the time of Filters > Remove Background goes on a big photo.

Bare onnxruntime inference of the same model runs in a process of its own between the runs
below ("bare" times, each run's neighbours), so that each can be set against the inference
of the same moment on a machine whose load changes.

1. Clicks, as a user makes them (plug-in start, helper, model, all): one as without a warm
   helper (today's cold click), then, from no helper, three in a row with the warm helper.
2. The same steps one by one with the plug-in's own functions, timed apart: pixel export,
   the pipe each way, the helper's stages (from its progress messages), writing the mask;
   once with a private helper (its start and model load included) and once with the warm
   helper (reaching it, and listing the models as each plug-in start does).
3. All Open Images over five copies, without and with a warm helper: wall time and helper
   processes started.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time

from support import (PARAMS, PROC_ALL, PROC_ONE, RESULTS, Gimp, load, run_procedure)
import helper_config

sys.path.insert(0, PARAMS["plugin_dir"])
from remove_background.wire import client, warm  # the installed plug-in's own

MODEL = PARAMS.get("model", "isnet")
SETTLE = 0.5        # seconds between a bare inference and the click after it
RUNS = PARAMS.get("runs", 2)

spec = importlib.util.spec_from_file_location(
    "remove_background_plugin", os.path.join(PARAMS["plugin_dir"], "remove-background.py"))
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)

image = load(PARAMS["photo"])
layer = image.get_layers()[0]
RESULTS["photo"] = [layer.get_width(), layer.get_height()]

config = helper_config.installed()
COLD = dict(config, warm_idle_seconds=0)

bare_process = subprocess.Popen(
    [PARAMS["venv"] + "/bin/python", PARAMS["src"] + "/tests/gimp/bench_gimp.py", "--bare-inference",
     "--serve", "--model", MODEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
RESULTS["bare_load"] = json.loads(bare_process.stdout.readline())["load"]


def bare():
    bare_process.stdin.write("\n")
    bare_process.stdin.flush()
    seconds = json.loads(bare_process.stdout.readline())["inference"]
    # onnxruntime's threads spin for a while after a run (its default): the click that comes
    # next would share the cores with them.
    time.sleep(SETTLE)
    return seconds


def click():
    started = time.monotonic()
    status, message, _values = run_procedure(PROC_ONE, image, [layer], model=MODEL)
    wall = time.monotonic() - started
    assert status == "success", message
    layer.remove_mask(Gimp.MaskApplyMode.DISCARD)
    return wall


# 1. Clicks: today's cold click, then three with the warm helper, a bare inference between each.
sequences = []
for _ in range(RUNS):
    sequence = {"bare": [bare()]}
    warm.stop_all()
    with helper_config.replaced(COLD):
        sequence["today"] = click()
    sequence["bare"].append(bare())
    warm.stop_all()
    sequence["warm"] = []
    for _click in range(3):
        sequence["warm"].append(click())
        sequence["bare"].append(bare())
    sequences.append(sequence)
RESULTS["clicks"] = sequences

# 2. Step by step.
def steps_of(helper, step):
    jobs = plugin.plan(image, [layer])
    job = jobs[0]
    started = time.monotonic()
    channels, pixels = plugin.read_pixels(job)
    for _strip in pixels:       # read here to be timed apart; a click sends each strip as it is read
        pass
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
    return step


steps, warm_steps = [], []
for _ in range(RUNS):
    step = {}
    started = time.monotonic()
    helper = client.HelperClient.from_config(PARAMS["plugin_dir"])
    helper.start()
    helper.load(MODEL)
    step["helper_start_and_load"] = time.monotonic() - started
    steps.append(steps_of(helper, step))

    step = {}
    started = time.monotonic()
    listing = client.warm_client(client.HelperClient.from_config(PARAMS["plugin_dir"]), start=False)
    listing.models()
    listing.close()
    step["models_listing"] = time.monotonic() - started
    started = time.monotonic()
    helper = client.warm_client(client.HelperClient.from_config(PARAMS["plugin_dir"]))
    step["warm_connect"] = time.monotonic() - started
    started = time.monotonic()
    step["warm_load_seconds_reported"] = helper.load(MODEL)["seconds"]
    step["warm_load"] = time.monotonic() - started
    warm_steps.append(steps_of(helper, step))
    step["bare"] = bare()
RESULTS["steps"] = steps
RESULTS["warm_steps"] = warm_steps
image.delete()

# 3. A batch of five, as today (no warm helper) and with one already loaded.
for _ in range(5):
    load(PARAMS["photo"])


def batch():
    with helper_config.logging_wrapper() as starts:
        before = starts.count()         # the log goes on from one batch to the next
        started = time.monotonic()
        status, message, values = run_procedure(PROC_ALL, model=MODEL)
        result = {"seconds": time.monotonic() - started, "status": status, "message": message,
                  "helper_starts": starts.count() - before,
                  "done": values.index(1) if status == "success" else None}
    for each in Gimp.get_images():
        if each.get_layers()[0].get_mask() is not None:
            each.get_layers()[0].remove_mask(Gimp.MaskApplyMode.DISCARD)
    return result


warm.stop_all()
batch_bare = [bare()]
with helper_config.replaced(COLD):
    RESULTS["batch"] = batch()
batch_bare.append(bare())
batch()              # leaves the wrapper's warm helper loaded (the wrapper is part of its key)
batch_bare.append(bare())
RESULTS["warm_batch"] = batch()
batch_bare.append(bare())
RESULTS["batch"]["bare"] = batch_bare[:2]
RESULTS["warm_batch"]["bare"] = batch_bare[2:]
warm.stop_all()
bare_process.stdin.close()
bare_process.wait()
