"""Snapping a mask painted by hand onto the photo's edges ("Refine Layer Mask", "Snap edges").

refine.py's residual filter keeps a mask's own detail: a hard painted edge a dozen pixels off
the subject's outline stays where it was painted.  Here the band around the painted outline
(BAND of the photo's long side, at least MIN_BAND px, on each side, and any soft part of the
mask) is treated as unknown and solved from the photo, on a working grid of at most
WORK_LONG_SIDE px:

- known foreground / background: what the painted mask says beyond the band;
- in the band, each pixel's alpha is its colour's position between the mean colour of the
  known foreground and of the known background around it (a local two-colour model, box filters
  only), trusted only where those two colours differ; elsewhere the painted value stays;
- the solved mask then goes through refine.refine at full resolution, so the new outline
  follows the photo's edges at the photo's own resolution.

Outside the band the painted mask is kept exactly.
"""

import numpy as np
from PIL import Image

from . import preprocess, refine
from .refine import box_mean

WORK_LONG_SIDE = 1024   # the band is solved on a grid this size at most (the photo's, if smaller)
BAND = 0.03             # of the photo's long side, on each side of the painted outline
MIN_BAND = 24           # photo pixels, at least
CONTRAST = 0.01         # squared colour distance (0..1 units) at which the two-colour model is half trusted


def band_radius(width, height):
    return max(MIN_BAND, int(round(BAND * max(width, height))))


def eroded(flags, radius):
    """Where every pixel of the (2r+1)² window around is set."""
    return box_mean(flags.astype(np.float64)[:, :, None], radius)[:, :, 0] > 1 - 1e-9


def solve_band(guide, mask, radius):
    """guide (h, w, c) float64 0..1, mask (h, w) float64 0..1 -> (solved mask, unknown flags)."""
    sure_fg = eroded(mask > 0.5, radius) & (mask >= 0.98)
    sure_bg = eroded(mask <= 0.5, radius) & (mask <= 0.02)
    unknown = ~(sure_fg | sure_bg)
    window = 2 * radius
    colours = guide.shape[2]
    planes = np.concatenate([guide * sure_fg[:, :, None], guide * sure_bg[:, :, None],
                             sure_fg[:, :, None].astype(np.float64),
                             sure_bg[:, :, None].astype(np.float64)], axis=2)
    means = box_mean(planes, window)
    count_fg, count_bg = means[:, :, 2 * colours], means[:, :, 2 * colours + 1]
    known = (count_fg > 1e-6) & (count_bg > 1e-6)
    fg = means[:, :, :colours] / np.maximum(count_fg, 1e-6)[:, :, None]
    bg = means[:, :, colours:2 * colours] / np.maximum(count_bg, 1e-6)[:, :, None]
    span = fg - bg
    distance = (span ** 2).sum(axis=2)
    alpha = ((guide - bg) * span).sum(axis=2) / np.maximum(distance, 1e-12)
    np.clip(alpha, 0, 1, out=alpha)
    trust = np.where(known, distance / (distance + CONTRAST), 0.0)
    solved = np.where(unknown, trust * alpha + (1 - trust) * mask, mask)
    return solved, unknown


def snap(pixels, mask, depth=1, workers=1, progress=None):
    """The photo (H, W, C) uint8 and its painted (H, W) mask (uint8, uint16 or float 0..1) ->
    the snapped (H, W) mask, uint8 (depth 1) or uint16 (depth 2)."""
    height, width = pixels.shape[:2]
    if mask.shape != (height, width):
        raise ValueError("the mask is %s, the photo %dx%d" % (mask.shape, width, height))
    full = 255.0 if mask.dtype == np.uint8 else 65535.0 if mask.dtype == np.uint16 else 1.0
    painted = mask.astype(np.float32) / np.float32(full)
    scale = min(1.0, WORK_LONG_SIDE / max(width, height))
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    colours = 3 if pixels.shape[2] >= 3 else 1
    guide = preprocess.resize_pillow(pixels, small_w, small_h, Image.Resampling.BOX)
    guide = guide[:, :, :colours].astype(np.float64) / 255
    small = np.asarray(Image.fromarray(painted, "F").resize((small_w, small_h), Image.Resampling.BOX),
                       np.float64)
    radius = max(1, int(round(band_radius(width, height) * scale)))
    solved, unknown = solve_band(guide, small, radius)
    if progress is not None:
        progress(0.3)
    solved_full = refine.refine(pixels, solved.astype(np.float32), depth, workers=workers,
                                progress=None if progress is None else (lambda f: progress(0.3 + 0.7 * f)))
    # The band, at full size (grown by a working-grid pixel): elsewhere the painted mask stays.
    band = np.asarray(Image.fromarray(unknown.astype(np.float32), "F")
                      .resize((width, height), Image.Resampling.BILINEAR)) > 0
    out_scale = 255.0 if depth == 1 else 65535.0
    kept = np.floor(painted * np.float32(out_scale) + np.float32(0.5))
    kept = kept.astype(np.uint8 if depth == 1 else np.uint16)
    return np.where(band, solved_full, kept)
