"""Colour decontamination: the subject's own colour for the semi-transparent edge pixels.

Forte & Pitié, "Approximate Fast Foreground Colour Estimation" (ICIP 2021), blur fusion
twice: a wide pass estimates the foreground and background colours near each pixel from
the opaque and the transparent pixels around it, a narrow pass refines them, and each
pixel's foreground is the estimate corrected so that a·F + (1 − a)·B gives the photo back.
Only pixels with 0 < alpha < 1 change; opaque and transparent pixels keep their values.

The wide pass's blur is computed on a reduced grid (it is smooth), the narrow one at full
resolution in bands of rows, so memory stays bounded whatever the photo's size.
"""

import numpy as np
from PIL import Image

from . import parallel
from .refine import box_mean

WIDE = 0.09             # the wide window, as a fraction of the photo's long side (90 px at 1000)
NARROW = 0.006          # the narrow one (6 px at 1000)
WIDE_GRID = 16          # the wide window spans about this many cells of its reduced grid
BAND_PIXELS = 1024 * 1024


def alpha_scale(alpha):
    if alpha.dtype == np.uint8:
        return 255.0
    if alpha.dtype == np.uint16:
        return 65535.0
    return 1.0


def _resize(values, size, resample):
    return np.asarray(Image.fromarray(np.ascontiguousarray(values, np.float32), "F").resize(size, resample))


def wide_estimates(pixels, alpha, colours, long_side):
    """Blurred foreground and background colours from the wide window, on a reduced grid."""
    height, width = alpha.shape
    cell = max(1.0, WIDE * long_side / WIDE_GRID)
    small_w, small_h = max(1, round(width / cell)), max(1, round(height / cell))
    a = _resize(alpha.astype(np.float32) / np.float32(alpha_scale(alpha)), (small_w, small_h),
                Image.Resampling.BOX).astype(np.float64)
    # The mean colour weighted by alpha and by 1 - alpha: the box shrink of colour x alpha
    # needs the full-resolution product, made a band at a time.
    fa = np.empty((small_h, small_w, colours))
    ba = np.empty((small_h, small_w, colours))
    scale = np.float32(alpha_scale(alpha))
    for c in range(colours):
        weighted = np.empty((height, width), np.float32)
        step = max(1, BAND_PIXELS // max(width, 1))
        for top in range(0, height, step):
            weighted[top:top + step] = pixels[top:top + step, :, c] * (alpha[top:top + step] / scale)
        fa[:, :, c] = _resize(weighted, (small_w, small_h), Image.Resampling.BOX)
        del weighted
        mean = _resize(pixels[:, :, c].astype(np.float32), (small_w, small_h), Image.Resampling.BOX)
        ba[:, :, c] = mean - fa[:, :, c]
    radius = WIDE_GRID // 2
    blurred = box_mean(np.concatenate([fa, ba, a[:, :, None]], axis=2), radius)
    weight_f = blurred[:, :, -1:]
    blur_f = blurred[:, :, :colours] / (weight_f + 1e-5)
    blur_b = blurred[:, :, colours:2 * colours] / (1 - weight_f + 1e-5)
    return (blur_f / 255).astype(np.float32), (blur_b / 255).astype(np.float32)


def decontaminate(pixels, alpha, workers=1):
    """(H, W, C) uint8 pixels and their (H, W) alpha (uint8, uint16 or float 0..1) -> new pixels.

    Colour channels of pixels with 0 < alpha < 1 get the estimated foreground colour; every
    other value (opaque and transparent pixels, a fourth channel) is copied unchanged.
    """
    if pixels.ndim != 3 or pixels.dtype != np.uint8 or pixels.shape[:2] != alpha.shape:
        raise ValueError("pixels must be (height, width, channels) uint8 matching the alpha's %s, got %s %s"
                         % (alpha.shape, pixels.shape, pixels.dtype))
    height, width = alpha.shape
    colours = 3 if pixels.shape[2] >= 3 else 1
    out = pixels.copy()
    full = alpha_scale(alpha)
    soft_rows = np.flatnonzero(((alpha > 0) & (alpha < full)).any(axis=1))
    if soft_rows.size == 0:
        return out
    long_side = max(height, width)
    blur_f, blur_b = wide_estimates(pixels, alpha, colours, long_side)
    small_h, small_w = blur_f.shape[:2]
    wide_f = [Image.fromarray(np.ascontiguousarray(blur_f[:, :, c]), "F") for c in range(colours)]
    wide_b = [Image.fromarray(np.ascontiguousarray(blur_b[:, :, c]), "F") for c in range(colours)]
    radius = max(1, round(NARROW * long_side / 2))
    band = max(1, BAND_PIXELS // max(width, 1))

    def upsampled(images, top, bottom):
        box = (0, top * small_h / height, small_w, bottom * small_h / height)
        return np.stack([np.asarray(im.resize((width, bottom - top), Image.Resampling.BILINEAR, box=box))
                         for im in images], axis=2)

    def bands(start, stop):
        for top in range(start, stop, band):
            bottom = min(stop, top + band)
            if not ((soft_rows >= top) & (soft_rows < bottom)).any():
                continue
            low, high = max(0, top - radius), min(height, bottom + radius)
            image = pixels[low:high, :, :colours].astype(np.float64) / 255
            a = (alpha[low:high].astype(np.float64) / full)[:, :, None]
            f0, b0 = upsampled(wide_f, low, high), upsampled(wide_b, low, high)
            # First blur fusion (the wide pass): F from the wide estimates.
            f1 = np.clip(f0 + a * (image - a * f0 - (1 - a) * b0), 0, 1)
            # Second, narrow pass: F and B blurred locally, from F1 and the wide B.
            blurred = box_mean(np.concatenate([f1 * a, b0 * (1 - a), a], axis=2), radius)
            weight = blurred[:, :, -1:]
            f2 = blurred[:, :, :colours] / (weight + 1e-5)
            b2 = blurred[:, :, colours:2 * colours] / (1 - weight + 1e-5)
            f = np.clip(f2 + a * (image - a * f2 - (1 - a) * b2), 0, 1)
            inner = slice(top - low, top - low + bottom - top)
            soft = (alpha[top:bottom] > 0) & (alpha[top:bottom] < full)
            estimate = np.floor(f[inner] * 255 + 0.5).astype(np.uint8)
            target = out[top:bottom, :, :colours]
            target[soft] = estimate[soft]

    parallel.for_row_blocks(height, bands, workers)
    return out
