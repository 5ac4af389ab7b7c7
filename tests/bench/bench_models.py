#!/usr/bin/env python3
"""Speed and agreement of the CPU forms of ISNet (a script, not a test).

    python tests/bench/bench_models.py DATASET_DIR [--runs N] [--derive]

Prints, interleaved in one process with the engine's session options:
  * seconds per 1024 x 1024 inference of the fp16 file as installed (isnet), of its fp32 form
    (what the engine saves beside it for the CPU) and of isnet-int8 (its CPU form, as the engine runs
    it), with their ratio to the fp16 file;
  * on DATASET_DIR (<set>/images/* and <set>/masks/<stem>.png, such as eval-dev, read, never
    copied): each variant's masks against the fp32 masks (mean and worst IoU at 0.5, mean absolute
    error) and against the ground truth (IoU);
  * the int8 derivation's time: with --derive it is made afresh in a temporary cache (isnet copied
    there), else the time recorded when the installed isnet-int8 was made.
Targets (issue 12): fp32 masks = fp16 masks (IoU >= 0.999, MAE <= 0.001); isnet-int8 vs fp32 mean
IoU >= 0.98, min >= 0.95, ground-truth IoU within 0.01 of isnet, >= 1.5 x faster than the fp16 file.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT))

import model_fetch  # noqa: E402
from model_fetch.cache import read_stamp  # noqa: E402
from remove_background.command import cli  # noqa: E402
from remove_background.helper import engine, fp32  # noqa: E402

THREADS = 2


def iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0


def photos(dataset):
    for set_dir in sorted(p for p in Path(dataset).iterdir() if (p / "images").is_dir()):
        for image in sorted((set_dir / "images").iterdir()):
            yield "%s/%s" % (set_dir.name, image.stem), image, set_dir / "masks" / (image.stem + ".png")


def derive_afresh(work):
    """isnet-int8 made in a temporary cache from a copy of the installed isnet; returns its path, seconds."""
    store = model_fetch.Store(cache_dir=work)
    store.import_file("isnet", model_fetch.installed_path("isnet"))
    started = time.monotonic()
    path = store.fetch("isnet-int8", progress=lambda step, done, total: done is None and print("   ", step))
    return path, time.monotonic() - started


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each variant (default 5)")
    parser.add_argument("--derive", action="store_true", help="derive isnet-int8 afresh and time it")
    args = parser.parse_args(argv)
    spec = model_fetch.get("isnet").preprocess
    with tempfile.TemporaryDirectory(prefix="bench-models-") as work:
        work = Path(work)
        fp16_path = model_fetch.installed_path("isnet")
        fp32_path = work / "isnet-fp32.onnx"
        fp32_path.write_bytes(fp32.cpu_form(fp16_path, spec["output_index"]))
        if args.derive:
            print("deriving isnet-int8 in a temporary cache:")
            int8_path, derive_seconds = derive_afresh(work / "cache")
        else:
            int8_path = model_fetch.installed_path("isnet-int8")
            derive_seconds = ((read_stamp(int8_path) or {}).get("notes") or {}).get("seconds")
        # isnet-int8 as the engine runs it too: its CPU form (the nodes of its unused outputs dropped).
        form = fp32.cpu_form(int8_path, spec["output_index"])
        int8_form = int8_path if form is None else work / "isnet-int8-cpu.onnx"
        if form is not None:
            int8_form.write_bytes(form)
        files = {"isnet (fp16 file)": fp16_path, "fp32 form (engine, CPU)": fp32_path, "isnet-int8": int8_form}
        engines = {name: engine.Engine(path, spec, threads=THREADS) for name, path in files.items()}
        report_speed(engines, args.runs)
        report_agreement(engines, args.dataset)
    from model_fetch import derive
    print("\nint8 derivation: %s (onnxruntime %s; %s)" % (
        "%.0f s" % derive_seconds if derive_seconds is not None else "unknown",
        derive.onnxruntime_version(), derive.cpu_int8()[1]))
    print("load average now: %.1f %.1f %.1f (2 cores)" % os.getloadavg())
    return 0


def report_speed(engines, runs):
    tensor = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32) - 0.5
    times = {name: [] for name in engines}
    for runner in engines.values():
        runner.infer(tensor)                   # the first run allocates
    load = os.getloadavg()[0]
    for _ in range(runs):
        for name, runner in engines.items():
            started = time.perf_counter()
            runner.infer(tensor)
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["isnet (fp16 file)"])
    print("\nseconds per 1024x1024 inference, %d threads, median of %d interleaved runs (load %.1f -> %.1f):"
          % (THREADS, runs, load, os.getloadavg()[0]))
    for name, values in times.items():
        median = statistics.median(values)
        print("  %-26s %6.3f  (best %.3f)  x%.2f of the fp16 file's time, %.2fx as fast"
              % (name, median, min(values), median / base, base / median))


def report_agreement(engines, dataset):
    rows = {name: [] for name in engines}
    for label, image_path, mask_path in photos(dataset):
        pixels = cli.pixels_of(cli.load_image(image_path))
        truth = np.asarray(Image.open(mask_path).convert("L")) > 127
        masks = {name: runner.mask(pixels) for name, runner in engines.items()}
        reference = masks["fp32 form (engine, CPU)"]
        for name, mask in masks.items():
            rows[name].append((label, iou(mask > 127, reference > 127),
                               np.abs(mask.astype(np.float64) - reference).mean() / 255, iou(mask > 127, truth)))
    count = len(rows["isnet-int8"])
    print("\nmasks on %s (%d photos) against the fp32 form's masks, and against the ground truth:" % (dataset, count))
    print("  %-26s %9s %9s  %-28s %7s %9s" % ("", "mean IoU", "min IoU", "(worst photo)", "MAE", "truth IoU"))
    for name, values in rows.items():
        worst = min(values, key=lambda row: row[1])
        print("  %-26s %9.4f %9.4f  %-28s %7.4f %9.4f" % (
            name, np.mean([v[1] for v in values]), worst[1], "(%s)" % worst[0],
            np.mean([v[2] for v in values]), np.mean([v[3] for v in values])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
