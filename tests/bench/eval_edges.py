"""Edge refinement and colour decontamination, measured on photos with ground truth (a script).

    python tests/bench/eval_edges.py DATASET_DIR... [--model NAME] [--cache DIR]

Each DATASET_DIR is a set (images/<stem>.<ext>, masks/<stem>.png, 255 = foreground) or a
folder of sets, such as ../shared/eval-dev; they are read, never copied.  Prints:

- MAE, IoU at 0.5 and boundary IoU (within 5 px of the true edge) for --no-refine and the
  default, in regime (a), the photos as they are, and (b) "big photo": each photo upscaled
  4x and the model's mask limited to 256x256 worth of detail, the result shrunk back to the
  ground truth's size (the photo then holds more detail than the mask, as a 4000-px photo
  does against a 1024x1024 mask);
- decontamination: each photo composited over another with its true alpha, cut out with the
  true alpha and with our own (refined) mask, placed on flat green and flat magenta, and
  compared with the truth in a 10-px band around the soft edges (mean absolute error, 0..255),
  with and without decontamination;
- the seconds of the refinement and of the decontamination on a 12-megapixel photo beside
  the bare inference's, interleaved, with the load average (the machine may be shared).

The model's raw outputs are cached in --cache (inference is the expensive part).
"""

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from remove_background.command import cli
from remove_background.helper import decontaminate, engine, postprocess, preprocess, refine

HERE = Path(__file__).resolve().parent
BAND_RADIUS = 5         # boundary IoU: pixels within this distance of the true edge
SOFT_BAND = 10          # decontamination: pixels within this distance of a soft pixel
BIG = 4                 # regime (b): the photo's upscaling
DETAIL = 256            # regime (b): the mask's detail
TIMING_PHOTO = HERE.parent / "fixtures" / "coffee.png"


def iou(predicted, truth):
    union = (predicted | truth).sum()
    return (predicted & truth).sum() / union if union else 1.0


def grown(binary, radius):
    image = Image.fromarray(binary.astype(np.uint8) * 255)
    return np.asarray(image.filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0


def boundary_band(truth):
    return grown(truth, BAND_RADIUS) & grown(~truth, BAND_RADIUS)


def scores(alpha, truth):
    predicted, expected = alpha > 0.5, truth > 0.5
    band = boundary_band(expected)
    return np.abs(alpha - truth).mean(), iou(predicted, expected), iou(predicted & band, expected & band)


def resize_float(values, size):
    return np.asarray(Image.fromarray(np.ascontiguousarray(values, np.float32), "F")
                      .resize(size, Image.Resampling.BILINEAR))


class Model:
    """The engine, with its raw outputs cached on disk by the input's digest."""

    def __init__(self, name, cache):
        self.engine = engine.load(name, threads=min(2, engine.cpu_count()))
        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.key = hashlib.sha256((name + self.engine.opened).encode()).hexdigest()[:12]

    def low_res(self, pixels):
        """The model's float 0..1 mask at its output size."""
        digest = hashlib.sha256(pixels.tobytes() + repr(pixels.shape).encode()).hexdigest()[:24]
        path = self.cache / ("%s-%s.npy" % (self.key, digest))
        if path.exists():
            output = np.load(path)
        else:
            tensor = preprocess.model_input(pixels, self.engine.preprocess, self.engine.threads)
            output = self.engine.infer(tensor)
            np.save(path, np.asarray(output, np.float32))
        return postprocess.mask_from_output(output, self.engine.preprocess)


def masks(pixels, small, refined, workers):
    height, width = pixels.shape[:2]
    if refined:
        mask = refine.refine(pixels, small, depth=2, workers=workers)
    else:
        mask = postprocess.upsample(small, width, height, depth=2, workers=workers)
    return mask.astype(np.float32) / 65535


def photo_sets(paths):
    for path in paths:
        if (path / "images").is_dir():
            yield path
        else:
            yield from sorted(p for p in path.iterdir() if (p / "images").is_dir())


def load_set(set_dir):
    items = []
    for image_path in sorted((set_dir / "images").iterdir()):
        pixels = cli.pixels_of(cli.load_image(image_path))
        truth = np.asarray(Image.open(set_dir / "masks" / (image_path.stem + ".png")).convert("L"))
        items.append((image_path.stem, pixels, truth))
    return items


def regime_rows(model, items, workers):
    """{(regime, refined): [MAE, IoU, boundary IoU]} averaged over the set."""
    rows = {}
    for stem, pixels, truth8 in items:
        truth = truth8.astype(np.float32) / 255
        height, width = truth.shape
        small = model.low_res(pixels)
        big = np.asarray(Image.fromarray(pixels[:, :, :3]).resize((BIG * width, BIG * height),
                                                                   Image.Resampling.BICUBIC))
        limited = model.low_res(big)
        limited = resize_float(resize_float(limited, (DETAIL, DETAIL)), limited.shape[::-1])
        for refined in (False, True):
            rows.setdefault(("a", refined), []).append(scores(masks(pixels, small, refined, workers), truth))
            alpha = resize_float(masks(big, limited, refined, workers), (width, height))
            rows.setdefault(("b", refined), []).append(scores(alpha, truth))
    return {key: np.mean(value, axis=0) for key, value in rows.items()}


def on_flat(colour, alpha, background):
    return np.round(alpha * colour + (1 - alpha) * np.asarray(background, np.float64))


def cutout_error(cut, alpha, photo, truth_alpha, band):
    """Mean absolute error (0..255) in the band of the cut-out on green and on magenta."""
    errors = []
    for background in ((0, 255, 0), (255, 0, 255)):
        got = on_flat(cut.astype(np.float64), alpha, background)
        want = on_flat(photo, truth_alpha, background)
        errors.append(np.abs(got - want)[band].mean())
    return float(np.mean(errors))


def decontamination_rows(model, items, workers):
    """{(alpha used, decontaminated): error} over the set's photos with soft alpha."""
    rows = {}
    for index, (stem, pixels, truth8) in enumerate(items):
        soft = (truth8 > 0) & (truth8 < 255)
        if soft.mean() < 0.001:
            continue                    # a hand-drawn binary mask: no soft edge to judge
        height, width = truth8.shape
        other = items[(index + 1) % len(items)][1]
        background = Image.fromarray(other[:, :, :3]).resize((width, height), Image.Resampling.BILINEAR)
        background = np.asarray(background, np.float64)
        photo = pixels[:, :, :3].astype(np.float64)
        a = (truth8.astype(np.float64) / 255)[:, :, None]
        composite = np.clip(np.round(a * photo + (1 - a) * background), 0, 255).astype(np.uint8)
        band = grown(soft, SOFT_BAND)
        ours = refine.refine(composite, model.low_res(composite), depth=1, workers=workers)
        for name, alpha8 in (("true alpha", truth8), ("our mask", ours)):
            alpha = (alpha8.astype(np.float64) / 255)[:, :, None]
            for cleaned in (False, True):
                cut = decontaminate.decontaminate(composite, alpha8, workers) if cleaned else composite
                rows.setdefault((name, cleaned), []).append(cutout_error(cut, alpha, photo, a, band))
    return {key: float(np.mean(value)) for key, value in rows.items()}


def timings(model, workers, rounds=3):
    """Median seconds on a 12 MP photo: bare inference, upsampling, refinement, decontamination."""
    image = cli.load_image(TIMING_PHOTO).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    pixels = cli.pixels_of(image)
    tensor = preprocess.model_input(pixels, model.engine.preprocess, workers)
    small = None
    seconds = {"inference": [], "upsample": [], "refine": [], "decontaminate": []}
    for _ in range(rounds):
        started = time.perf_counter()
        output = model.engine.infer(tensor)
        seconds["inference"].append(time.perf_counter() - started)
        small = postprocess.mask_from_output(output, model.engine.preprocess)
        started = time.perf_counter()
        postprocess.upsample(small, 4000, 3000, 1, workers=workers)
        seconds["upsample"].append(time.perf_counter() - started)
        started = time.perf_counter()
        mask = refine.refine(pixels, small, 1, workers=workers)
        seconds["refine"].append(time.perf_counter() - started)
        started = time.perf_counter()
        decontaminate.decontaminate(pixels, mask, workers)
        seconds["decontaminate"].append(time.perf_counter() - started)
    return {key: statistics.median(value) for key, value in seconds.items()}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    parser.add_argument("--model", default="isnet")
    parser.add_argument("--cache", default="/tmp/eval_edges-cache",
                        help="where the model's raw outputs are kept")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args(argv)
    model = Model(args.model, args.cache)
    workers = model.engine.threads
    print("%-8s %-3s %-10s %4s  %7s  %6s  %9s" % ("set", "reg", "mask", "n", "MAE", "IoU", "bound.IoU"))
    decontaminated = {}
    for set_dir in photo_sets(args.datasets):
        items = load_set(set_dir)
        rows = regime_rows(model, items, workers)
        for regime in ("a", "b"):
            for refined in (False, True):
                mae, whole, edge = rows[regime, refined]
                name = "refined" if refined else "no-refine"
                print("%-8s %-3s %-10s %4d  %7.4f  %6.4f  %9.4f"
                      % (set_dir.name, regime, name, len(items), mae, whole, edge), flush=True)
        for key, value in decontamination_rows(model, items, workers).items():
            decontaminated.setdefault(key, []).append(value)
    for name in ("true alpha", "our mask"):
        if (name, False) in decontaminated:
            kept, cleaned = np.mean(decontaminated[name, False]), np.mean(decontaminated[name, True])
            print("decontamination, %-10s: composite's colours %.3f -> decontaminated %.3f (%+.1f%%)"
                  % (name, kept, cleaned, 100 * (cleaned / kept - 1)))
    if not args.no_timing:
        seconds = timings(model, workers)
        added = seconds["refine"] - seconds["upsample"]
        print("12 MP photo (median of 3, %d threads, load average %.1f): inference %.2f s, bilinear upsampling"
              " %.3f s, refinement %.3f s (+%.3f s = %.1f%% of inference), decontamination %.3f s"
              % (workers, os.getloadavg()[0], seconds["inference"], seconds["upsample"], seconds["refine"],
                 added, 100 * added / seconds["inference"], seconds["decontaminate"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
