#!/usr/bin/env python3
"""Benchmark: Filters > Remove Background inside a real GIMP 3 on a 12-megapixel photo.

    python3 tests/gimp/bench_gimp.py [--model isnet] [--runs 2] [--gimp 3.0|3.2]

Prints, each against bare onnxruntime inference of the same model run just before and just after
it (in a process of its own, interleaved with GIMP's runs): a click as without a warm helper,
three clicks in a row with the warm helper (the first starts it), where the time of a click
goes with a private and with the warm helper, and a batch of five images, without and with a
warm helper.
Needs what the in-GIMP tests need (tests/gimp/gimp3.py) and Pillow.  Not a test: figures only.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PHOTO_SIZE = (4242, 2828)   # 12.0 megapixels, 3:2


def bare_inference(model, runs, serve=False):
    """Runs in the helper's venv: onnxruntime alone on the model's input, best of ``runs``.

    ``serve``: loads once, then runs once for each line read from stdin (the in-GIMP script
    interleaves these runs with its clicks), answering each with a line of JSON.
    """
    import numpy as np
    import onnxruntime

    import model_fetch

    path = model_fetch.installed_path(model)
    started = time.monotonic()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    load = time.monotonic() - started
    spec = session.get_inputs()[0]
    shape = [1 if not isinstance(n, int) else n for n in spec.shape]
    dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
    tensor = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    output = session.get_outputs()[0].name
    session.run([output], {spec.name: tensor})            # warm-up

    def timed():
        started = time.monotonic()
        session.run([output], {spec.name: tensor})
        return time.monotonic() - started

    if serve:
        print(json.dumps({"load": load, "input": shape}), flush=True)
        for _line in sys.stdin:
            print(json.dumps({"inference": timed()}), flush=True)
        return
    times = [timed() for _ in range(runs)]
    print(json.dumps({"load": load, "inference": times, "input": shape}))


def make_photo(target):
    from PIL import Image

    photo = Image.open(HERE.parent / "fixtures" / "coffee.png").convert("RGB")
    photo.resize(PHOTO_SIZE, Image.LANCZOS).save(target, compress_level=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="isnet")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--gimp", default="3.0", help="the GIMP version to run in (3.0 or 3.2)")
    parser.add_argument("--bare-inference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_inference:
        return bare_inference(args.model, args.runs + 1, serve=args.serve)

    import gimp3

    gimp = gimp3.prepare(args.gimp)
    photo = gimp.work + "/bench-photo.png"
    if not gimp.host_path(photo).exists():
        make_photo(gimp.host_path(photo))

    results, _run_dir, _output = gimp.run_script(
        "bench_cases.py", {"photo": photo, "model": args.model, "runs": args.runs}, timeout=3600)

    def median(values):
        values = sorted(values)
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    sequences = results["clicks"]
    every_bare = [seconds for sequence in sequences for seconds in sequence["bare"]]
    inference = median(every_bare)
    width, height = results["photo"]
    print("Remove Background in GIMP 3 (%s), %d x %d photo (%.1f MP), %s, %d runs (medians)"
          % (gimp, width, height, width * height / 1e6, args.model, args.runs))
    print("  bare onnxruntime inference      %6.2f s   (%.2f to %.2f s over the runs; model load %.2f s)"
          % (inference, min(every_bare), max(every_bare), results["bare_load"]))

    def against_bare(title, walls_and_bares, note=""):
        ratios = [wall / ((before + after) / 2) for wall, before, after in walls_and_bares]
        print("  %-31s %6.2f s   = %.2f x bare inference (each: %s)%s" % (
            title, median([wall for wall, _b, _a in walls_and_bares]), median(ratios),
            ", ".join("%.2f" % ratio for ratio in ratios), note))

    against_bare("a click without a warm helper",
                 [(seq["today"], seq["bare"][0], seq["bare"][1]) for seq in sequences])
    for number in range(3):
        against_bare("warm helper, click %d" % (number + 1),
                     [(seq["warm"][number], seq["bare"][number + 1], seq["bare"][number + 2])
                      for seq in sequences], "   (starts it)" if number == 0 else "")

    for title, key, first in (("with a private helper", "steps", "helper_start_and_load"),
                              ("with the warm helper", "warm_steps", None)):
        steps = {name: median([step[name] for step in results[key]]) for name in results[key][0]}
        reference = median([step["bare"] for step in results["warm_steps"]])
        print("  step by step, %s (bare inference next to them %.2f s):" % (title, reference))
        names = ([first] if first else ["models_listing", "warm_connect", "warm_load"]) + [
            "pixel_export", "pipe_to_helper", "preprocess", "inference", "postprocess",
            "pipe_from_helper", "writing_the_mask"]
        for name in names:
            print("    %-28s %7.3f s   %5.1f %% of bare inference"
                  % (name.replace("_", " "), steps[name], 100 * steps[name] / reference))
        if key == "warm_steps":
            inside = sum(steps[name] for name in names)
            warm_click = median([wall for seq in sequences for wall in seq["warm"][1:]])
            print("    %-28s %7.3f s   (a warm click's wall, %.2f s, minus the steps above: GIMP"
                  " starting the plug-in, its Python and gi imports, the PDB call; noisy)"
                  % ("plug-in start and the rest", warm_click - inside, warm_click))
    for title, key in (("without a warm helper", "batch"), ("with a warm helper", "warm_batch")):
        batch = results[key]
        reference = sum(batch["bare"]) / 2
        print("  All Open Images, 5 photos, %s: %.1f s (%.2f s an image = %.2f x bare inference %.2f s), "
              "%s, %s done, %d helper start(s)"
              % (title, batch["seconds"], batch["seconds"] / 5, batch["seconds"] / 5 / reference, reference,
                 batch["status"], batch["done"], batch["helper_starts"]))
    print("  load average after: %.1f %.1f %.1f (2 cores shared with other work: noisy)" % os.getloadavg())
    print(json.dumps({key: results[key] for key in ("clicks", "steps", "warm_steps", "batch", "warm_batch",
                                                     "bare_load")}, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
