"""How well "Snap edges to the photo" (helper/snap.py) puts a roughly painted mask back on the
subject's outline, on sets laid out like ../shared/eval-dev (images/, masks/).

    python tests/bench/eval_snap.py DATASET_DIR...

Each true mask is "painted roughly": grown or shrunk by OFFSETS pixels (of a 1000-px long side)
with a hard edge, and the same with a soft brush (blurred).  Printed per set: MAE, IoU and
boundary IoU (within 5 px of the true edge) of the painted mask, of refine.refine (the residual
filter, which keeps a painted edge), and of snap.snap.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_edges import load_set, photo_sets, scores
from remove_background.helper import refine, snap

OFFSETS = (-12, -6, 6, 12)
SOFT = 8                # the soft brush's blur radius (of a 1000-px long side)


def painted(truth, offset, soft):
    binary = Image.fromarray(((truth > 0.5) * 255).astype(np.uint8))
    radius = abs(offset)
    shifted = binary.filter(ImageFilter.MaxFilter(2 * radius + 1) if offset > 0
                            else ImageFilter.MinFilter(2 * radius + 1))
    if soft:
        shifted = shifted.filter(ImageFilter.GaussianBlur(soft))
    return np.asarray(shifted)


def main(argv):
    for set_dir in photo_sets([Path(a) for a in argv]):
        items = load_set(set_dir)
        rows = {}
        for _name, pixels, truth in items:
            truth = truth.astype(np.float64) / 255
            scale = max(truth.shape) / 1000
            for offset in OFFSETS:
                for soft in (0, SOFT):
                    step = int(round(offset * scale)) or (1 if offset > 0 else -1)
                    mask = painted(truth, step, soft * scale)
                    results = {"painted": mask.astype(np.float64) / 255,
                               "refine": refine.refine(pixels, mask.astype(np.float32) / 255).astype(np.float64) / 255,
                               "snap": snap.snap(pixels, mask).astype(np.float64) / 255}
                    for what, alpha in results.items():
                        rows.setdefault((offset, bool(soft), what), []).append(scores(alpha, truth))
        print("%s (%d photos): MAE / IoU / boundary IoU" % (set_dir.name, len(items)))
        for offset in OFFSETS:
            for soft in (False, True):
                line = "  offset %+3d %s" % (offset, "soft" if soft else "hard")
                for what in ("painted", "refine", "snap"):
                    mae, iou, biou = np.mean(rows[offset, soft, what], axis=0)
                    line += "  %s %.4f/%.4f/%.4f" % (what, mae, iou, biou)
                print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
