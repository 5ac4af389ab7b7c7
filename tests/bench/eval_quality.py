"""Mask quality of the installed models on photos with ground truth (a script, not a test).

    python tests/bench/eval_quality.py DATASET_DIR [--model NAME ...]

DATASET_DIR holds sets laid out as <set>/images/<stem>.<ext> and <set>/masks/<stem>.png
(8-bit, 255 = foreground), such as the team's eval-dev photos; they are read, never copied.
Prints, per set: mean absolute alpha error, IoU at 0.5, and the IoU within a thin band around
the true boundary, where edge quality shows.
"""

import argparse
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
    pixels = cli.pixels_of(cli.load_image(image_path))
    alpha = runner.mask(pixels, depth=2).astype(np.float64) / 65535
    truth = np.asarray(Image.open(mask_path).convert("L")).astype(np.float64) / 255
    band = boundary_band(truth > 0.5)
    predicted, expected = alpha > 0.5, truth > 0.5
    return (np.abs(alpha - truth).mean(), iou(predicted, expected),
            iou(predicted & band, expected & band))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", action="append", help="a model to score (default: isnet)")
    args = parser.parse_args(argv)
    print("%-12s %-8s %4s  %7s  %6s  %9s  %8s" % ("model", "set", "n", "MAE", "IoU", "edge IoU", "s/image"))
    for name in args.model or ["isnet"]:
        runner = engine.load(name)
        for set_dir in sorted(p for p in args.dataset.iterdir() if (p / "images").is_dir()):
            rows, started = [], time.perf_counter()
            for image_path in sorted((set_dir / "images").iterdir()):
                rows.append(score(runner, image_path, set_dir / "masks" / (image_path.stem + ".png")))
            seconds = (time.perf_counter() - started) / len(rows)
            mae, whole, edge = np.mean(rows, axis=0)
            print("%-12s %-8s %4d  %7.4f  %6.3f  %9.3f  %8.2f" % (name, set_dir.name, len(rows), mae, whole, edge, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
