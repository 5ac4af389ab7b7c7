"""Mask quality of the installed models on photos with ground truth (a script, not a test).

    python tests/bench/eval_quality.py DATASET_DIR [--model NAME ...]

DATASET_DIR holds sets laid out as <set>/images/<stem>.<ext> and <set>/masks/<stem>.png
(8-bit, 255 = foreground), such as the team's eval-dev photos; they are read, never copied.
Prints, per set and over all photos: mean absolute alpha error, IoU at 0.5, the IoU within a thin
band around the true boundary, where edge quality shows, and the seconds per photo (the whole mask,
and onnxruntime's run() alone). Several models are run photo by photo, interleaved.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from remove_background.command import cli
from remove_background.helper import engine

BAND_RADIUS = 7     # pixels either side of the true boundary


def iou(predicted, truth):
    union = (predicted | truth).sum()
    return (predicted & truth).sum() / union if union else 1.0


def boundary_band(truth):
    binary = Image.fromarray((truth * 255).astype(np.uint8))
    size = 2 * BAND_RADIUS + 1
    grown = np.asarray(binary.filter(ImageFilter.MaxFilter(size))) > 0
    shrunk = np.asarray(binary.filter(ImageFilter.MinFilter(size))) > 0
    return grown & ~shrunk


def score(runner, image_path, mask_path):
    """(MAE, IoU, edge IoU, seconds for the mask, seconds of it in onnxruntime's run())."""
    pixels = cli.pixels_of(cli.load_image(image_path))
    started = time.perf_counter()
    alpha = runner.mask(pixels, depth=2).astype(np.float64) / 65535
    seconds = time.perf_counter() - started
    truth = np.asarray(Image.open(mask_path).convert("L")).astype(np.float64) / 255
    band = boundary_band(truth > 0.5)
    predicted, expected = alpha > 0.5, truth > 0.5
    return (np.abs(alpha - truth).mean(), iou(predicted, expected),
            iou(predicted & band, expected & band), seconds, runner.inference_seconds.pop())


def timed_inference(runner):
    """Records the seconds of each onnxruntime run() the runner makes, in runner.inference_seconds."""
    infer = runner.infer
    runner.inference_seconds = []

    def timed(tensor, run_options=None):
        started = time.perf_counter()
        try:
            return infer(tensor, run_options)
        finally:
            runner.inference_seconds.append(time.perf_counter() - started)

    runner.infer = timed
    return runner


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", action="append", help="a model to score (default: isnet)")
    args = parser.parse_args(argv)
    names = args.model or ["isnet"]
    runners = {name: timed_inference(engine.load(name)) for name in names}
    rows = {name: {} for name in names}
    for set_dir in sorted(p for p in args.dataset.iterdir() if (p / "images").is_dir()):
        for image_path in sorted((set_dir / "images").iterdir()):
            for name in names:   # interleaved, so that a busy machine slows every model alike
                row = score(runners[name], image_path, set_dir / "masks" / (image_path.stem + ".png"))
                rows[name].setdefault(set_dir.name, []).append(row)
    print("%-12s %-8s %4s  %7s  %6s  %9s  %8s  %11s" % ("model", "set", "n", "MAE", "IoU", "edge IoU", "s/image",
                                                        "s inference"))
    for name in names:
        sets = dict(rows[name], all=[row for set_rows in rows[name].values() for row in set_rows])
        for set_name, set_rows in sets.items():
            mae, whole, edge, seconds, inference = np.mean(set_rows, axis=0)
            print("%-12s %-8s %4d  %7.4f  %6.3f  %9.3f  %8.2f  %11.2f"
                  % (name, set_name, len(set_rows), mae, whole, edge, seconds, inference))
    print("(s/image: pixels in memory -> full-size mask; s inference: onnxruntime's run() alone; "
          "load average %s)" % " ".join("%.1f" % x for x in os.getloadavg()))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
