#!/usr/bin/env python3
"""Benchmark: Filters > Remove Background inside a real GIMP 3 on a 12-megapixel photo.

    python3 tests/gimp/bench_gimp.py [--model isnet] [--runs 2] [--gimp 3.0|3.2]

Prints the procedure's wall time against bare onnxruntime inference of the same model,
the share of pixel export, the pipe and writing the mask, and a batch of five images.
Needs what the in-GIMP tests need (tests/gimp/gimp3.py) and Pillow.  Not a test: figures only.
"""

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PHOTO_SIZE = (4242, 2828)   # 12.0 megapixels, 3:2


def bare_inference(model, runs):
    """Runs in the helper's venv: onnxruntime alone on the model's input, best of ``runs``."""
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
    times = []
    for _ in range(runs):
        started = time.monotonic()
        session.run([output], {spec.name: tensor})
        times.append(time.monotonic() - started)
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
    args = parser.parse_args()
    if args.bare_inference:
        return bare_inference(args.model, args.runs + 1)

    import gimp3

    gimp = gimp3.prepare(args.gimp)
    photo = gimp.work + "/bench-photo.png"
    if not gimp.host_path(photo).exists():
        make_photo(gimp.host_path(photo))

    bare = gimp.run([gimp.venv + "/bin/python", gimp.src + "/tests/gimp/bench_gimp.py",
                     "--bare-inference", "--model", args.model, "--runs", str(args.runs)])
    bare = json.loads(bare.stdout.decode().strip().splitlines()[-1])
    results, _run_dir, _output = gimp.run_script(
        "bench_cases.py", {"photo": photo, "model": args.model, "runs": args.runs}, timeout=3600)

    inference = min(bare["inference"])
    procedure = min(results["procedure_seconds"])
    steps = {key: min(step[key] for step in results["steps"]) for key in results["steps"][0]}
    overhead = steps["pixel_export"] + steps["pipe_to_helper"] + steps["pipe_from_helper"] \
        + steps["writing_the_mask"]
    width, height = results["photo"]
    print("Remove Background in GIMP 3 (%s), %d x %d photo (%.1f MP), %s, best of %d"
          % (gimp, width, height, width * height / 1e6, args.model, args.runs))
    print("  bare onnxruntime inference      %6.2f s   (model load %.2f s)" % (inference, bare["load"]))
    print("  the whole procedure (wall)      %6.2f s   = %.2f x bare inference"
          % (procedure, procedure / inference))
    print("  step by step:")
    for key in ("helper_start_and_load", "pixel_export", "pipe_to_helper", "preprocess",
                "inference", "postprocess", "pipe_from_helper", "writing_the_mask"):
        print("    %-28s %6.2f s   %5.1f %% of bare inference"
              % (key.replace("_", " "), steps[key], 100 * steps[key] / inference))
    print("  GIMP-side overhead (export + pipe both ways + writing the mask): %.2f s = %.1f %% of "
          "inference" % (overhead, 100 * overhead / inference))
    batch = results["batch"]
    print("  All Open Images, 5 photos: %.1f s (%.1f s an image), %s, %s image(s) done, "
          "%d helper start(s) (one lists the models)"
          % (batch["seconds"], batch["seconds"] / 5, batch["status"], batch["done"],
             batch["helper_starts"]))
    print(json.dumps({"bare": bare, "procedure_seconds": results["procedure_seconds"],
                      "steps": results["steps"], "batch": batch}, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
