"""Edge-aware refinement of a mask to the photo's full resolution, with the photo as the guide.

A fast guided filter (He & Sun 2015) in residual form:

    out = bilinear(mask) + A·photo + B

A and B are a colour guided filter's coefficients computed on a small working grid
(WORK_LONG_SIDE on the photo's long side), minus what a plain box blur of the mask would
give there, then stretched bilinearly and applied to the full-resolution photo.  Where the
photo has no edge the correction is zero and the mask is the bilinear one, exactly (thin
parts and corners are not eroded, unlike the plain guided filter); where the photo has an
edge the mask's soft ramp is pulled onto it.  Measured in tests/bench/eval_edges.py against
the plain filter, larger grids and radii: this form was the only one better on both the soft
(alpha) and the binary (davis) sets.

Only the parts of the photo where the mask varies are computed at full resolution (the
correction vanishes elsewhere), in bands, so the cost follows the length of the outline.
"""

import threading

import numpy as np
from PIL import Image

from . import parallel, postprocess, preprocess

WORK_LONG_SIDE = 512    # the working grid's long side (the photo's, if smaller)
RADIUS = 4              # the filter's window radius, in working-grid pixels
EPS = 1e-4              # regularisation: how strong a photo edge must be to move the mask
ACTIVE = 1e-3           # where a bound of the correction is below this, the bilinear mask stays
BAND_PIXELS = 1024 * 1024


def box_mean(values, radius):
    """The mean over a (2r+1)² window of each (h, w) plane of an (h, w, k) float64 array,
    the window cut at the image's borders."""
    for axis in (0, 1):
        n = values.shape[axis]
        index = np.arange(n)
        high = np.minimum(index + radius, n - 1) + 1
        low = np.maximum(index - radius, 0)
        shape = [1, 1, 1]
        shape[axis] = n + 1
        sums = np.zeros(tuple(n + 1 if d == axis else values.shape[d] for d in range(3)))
        np.cumsum(values, axis=axis, out=sums[1:] if axis == 0 else sums[:, 1:])
        shape[axis] = n
        count = (high - low).astype(np.float64).reshape(shape)
        values = (sums.take(high, axis=axis) - sums.take(low, axis=axis)) / count
    return values


def coefficients(guide, mask, radius, eps):
    """Guided-filter coefficients on the small grid: a per guide channel, b, box-averaged, and
    the box blur of the box blur of the mask (what they give where the guide is flat).

    ``guide``: (h, w, 1 or 3) float64 in 0..1; ``mask``: (h, w) float64.
    """
    colours = guide.shape[2]
    pairs = [(i, j) for i in range(colours) for j in range(i, colours)]
    # All the first box filters at once: guide, mask, guide x mask, guide x guide.
    planes = [guide[:, :, c] for c in range(colours)] + [mask]
    planes += [guide[:, :, c] * mask for c in range(colours)]
    planes += [guide[:, :, i] * guide[:, :, j] for i, j in pairs]
    means = box_mean(np.stack(planes, axis=2), radius)
    mean_i = [means[:, :, c] for c in range(colours)]
    mean_p = means[:, :, colours]
    cov_p = [means[:, :, colours + 1 + c] - mean_i[c] * mean_p for c in range(colours)]
    v = {pair: means[:, :, 2 * colours + 1 + k] - mean_i[pair[0]] * mean_i[pair[1]]
         for k, pair in enumerate(pairs)}
    for i in range(colours):
        v[i, i] = v[i, i] + eps
    if colours == 1:
        a = [cov_p[0] / v[0, 0]]
    else:
        # The 3x3 covariance inverted by its adjugate, per pixel.
        c00 = v[1, 1] * v[2, 2] - v[1, 2] ** 2
        c01 = v[0, 2] * v[1, 2] - v[0, 1] * v[2, 2]
        c02 = v[0, 1] * v[1, 2] - v[0, 2] * v[1, 1]
        c11 = v[0, 0] * v[2, 2] - v[0, 2] ** 2
        c12 = v[0, 1] * v[0, 2] - v[0, 0] * v[1, 2]
        c22 = v[0, 0] * v[1, 1] - v[0, 1] ** 2
        det = v[0, 0] * c00 + v[0, 1] * c01 + v[0, 2] * c02
        a = [(c00 * cov_p[0] + c01 * cov_p[1] + c02 * cov_p[2]) / det,
             (c01 * cov_p[0] + c11 * cov_p[1] + c12 * cov_p[2]) / det,
             (c02 * cov_p[0] + c12 * cov_p[1] + c22 * cov_p[2]) / det]
    b = mean_p - sum(ai * m for ai, m in zip(a, mean_i))
    averaged = box_mean(np.stack(a + [b, mean_p], axis=2), radius)
    return [averaged[:, :, k] for k in range(colours + 2)]


def working_size(width, height, long_side=WORK_LONG_SIDE):
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def correction_maps(pixels, mask, radius=RADIUS, eps=EPS):
    """The residual filter's maps on the working grid: per colour a (per 0..255 value), then b."""
    height, width = pixels.shape[:2]
    small_w, small_h = working_size(width, height)
    colours = pixels.shape[2] if pixels.shape[2] in (1, 3) else (3 if pixels.shape[2] == 4 else 1)
    guide = preprocess.resize_pillow(pixels, small_w, small_h, Image.Resampling.BOX)
    guide = guide[:, :, :colours].astype(np.float64) / 255
    p = np.asarray(Image.fromarray(np.ascontiguousarray(mask, np.float32), "F")
                   .resize((small_w, small_h), Image.Resampling.BILINEAR), np.float64)
    maps = coefficients(guide, p, radius, eps)
    # Minus what the filter gives where the photo is flat (a box blur of the box blur of p):
    # there the bilinear mask stays as it is.
    flat = maps.pop()
    maps[-1] = maps[-1] - flat
    maps[:-1] = [a / 255 for a in maps[:-1]]
    return [m.astype(np.float32) for m in maps]


def active_tiles(maps):
    """Where on the working grid the correction is not negligible, grown by one pixel."""
    size = sum(np.abs(a) * 255 for a in maps[:-1]) + np.abs(maps[-1])
    active = size > ACTIVE
    grown = active.copy()
    grown[1:] |= active[:-1]
    grown[:-1] |= active[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    return grown


def runs(flags):
    """[start, stop) of each run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], flags, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(changes[::2], changes[1::2]))


def refine(pixels, mask, depth=1, workers=1, progress=None, radius=RADIUS, eps=EPS):
    """The photo (H, W, C) uint8, C in 1..4, and a float 0..1 mask of any size -> (H, W) mask.

    uint8 (depth 1) or uint16 (depth 2), like postprocess.upsample, which it equals wherever
    the photo shows no edge near the mask's outline.  ``mask`` may be the model's low-resolution
    output or a full-resolution mask (one painted by hand: its edges then snap to the photo's).
    """
    height, width = pixels.shape[:2]
    out = postprocess.upsample(mask, width, height, depth, workers=workers,
                               progress=None if progress is None else (lambda f: progress(f / 2)))
    maps = correction_maps(pixels, mask, radius, eps)
    active = active_tiles(maps)
    small_h, small_w = active.shape
    scale = 255.0 if depth == 1 else 65535.0
    source = Image.fromarray(np.ascontiguousarray(mask, np.float32), "F")
    mask_h, mask_w = mask.shape
    images = [Image.fromarray(m, "F") for m in maps]
    colours = len(maps) - 1
    sx, sy = small_w / width, small_h / height
    band = max(1, min(height, int(np.ceil(8 / sy)), BAND_PIXELS // max(width, 1)))
    done = [0]
    lock = threading.Lock()

    def region(top, bottom, left, right):
        size = (right - left, bottom - top)
        base = source.resize(size, Image.Resampling.BILINEAR,
                             box=(left * mask_w / width, top * mask_h / height,
                                  right * mask_w / width, bottom * mask_h / height))
        value = np.asarray(base, np.float32).copy()
        box = (left * sx, top * sy, right * sx, bottom * sy)
        for index, image in enumerate(images):
            part = np.asarray(image.resize(size, Image.Resampling.BILINEAR, box=box))
            if index < colours:
                value += part * pixels[top:bottom, left:right, index]
            else:
                value += part
        np.clip(value, 0, 1, out=value)
        value *= np.float32(scale)
        value += np.float32(0.5)
        out[top:bottom, left:right] = value

    def bands(start, stop):
        for top in range(start, stop, band):
            bottom = min(stop, top + band)
            # The working-grid rows the band's bilinear taps read.
            first = max(0, int(np.floor((top + 0.5) * sy - 0.5)))
            last = min(small_h - 1, int(np.floor((bottom - 0.5) * sy - 0.5)) + 1)
            columns = active[first:last + 1].any(axis=0)
            for start_col, stop_col in runs(columns):
                left = max(0, int(np.floor((start_col - 0.5) / sx)) - 1)
                right = min(width, int(np.ceil((stop_col + 0.5) / sx)) + 1)
                region(top, bottom, left, right)
            if progress is not None:
                with lock:
                    done[0] += bottom - top
                    progress(0.5 + done[0] / height / 2)

    parallel.for_row_blocks(height, bands, workers)
    return out
