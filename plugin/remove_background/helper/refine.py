"""Edge-aware refinement of a mask to the photo's full resolution, with the photo as the guide.

A fast guided filter (He & Sun 2015) in residual form:

    out = bilinear(mask) + A·photo + B

A and B are a colour guided filter's coefficients computed on a small working grid
(WORK_LONG_SIDE on the photo's long side), minus what a plain box blur of the mask would
give there, then stretched bilinearly and applied to the full-resolution photo.  Where the
photo has no edge the correction is zero and the mask is the bilinear one, exactly (thin
parts and corners are not eroded, unlike the plain guided filter); where the photo has an
edge the mask's soft ramp is pulled onto it.  Measured with tests/bench/eval_edges.py: the
plain filter (at the photo's size or on this grid) gained boundary IoU on soft alpha but lost
it on binary masks; this form gains on both, in both regimes, and grids of 256 to 640 px
(radius scaled with them) score the same, so the cheap one is used.

Only the parts of the photo where the mask varies are computed at full resolution (the
correction vanishes elsewhere), in bands, so the cost follows the length of the outline.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from . import parallel, postprocess, preprocess

WORK_LONG_SIDE = 384    # the working grid's long side (the photo's, if smaller)
RADIUS = 3              # the filter's window radius, in working-grid pixels
EPS = 1e-4              # regularisation: how strong a photo edge must be to move the mask
ACTIVE = 0.5 / 255      # where a bound of the correction is below this (half an 8-bit level), the bilinear mask stays
BAND_PIXELS = 1024 * 1024
GUIDE_SAMPLES = 4       # photo rows (and columns) averaged into each working-grid pixel, at least


def box_mean(values, radius):
    """The mean over a (2r+1)² window of each (h, w) plane of an (h, w, k) float64 array,
    the window cut at the image's borders."""
    for axis in (0, 1):
        if axis == 1:
            values = np.ascontiguousarray(values.transpose(1, 0, 2))
        n = values.shape[0]
        # Running sums row by row: numpy's cumsum along the first axis is ten times slower.
        sums = np.empty((n + 1,) + values.shape[1:])
        sums[0] = 0
        for row in range(n):
            np.add(sums[row], values[row], out=sums[row + 1])
        index = np.arange(n)
        high = np.minimum(index + radius, n - 1) + 1
        low = np.maximum(index - radius, 0)
        if n > 2 * radius + 1:
            # As sums[high] - sums[low], by slices (a gather is slower).
            values = np.empty(values.shape)
            np.subtract(sums[2 * radius + 1:], sums[:n - 2 * radius], out=values[radius:n - radius])
            values[:radius] = sums[radius + 1:2 * radius + 1] - sums[0]
            np.subtract(sums[n], sums[n - 2 * radius:n - radius], out=values[n - radius:])
        else:
            values = sums[high] - sums[low]
        values /= (high - low).astype(np.float64)[:, None, None]
    return np.ascontiguousarray(values.transpose(1, 0, 2))


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


def working_size(width, height, long_side=None):
    scale = min(1.0, (long_side or WORK_LONG_SIDE) / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def guide_grid(height, width):
    """(width, height) of the working grid, and the step between the photo's rows (and columns)
    that are box-averaged into the guide: every other one (or fewer, on big photos) of a photo
    that has GUIDE_SAMPLES of them or more for each grid pixel gives the same guide within the
    photo's own noise, at a quarter (or less) of the cost."""
    small_w, small_h = working_size(width, height)
    return small_w, small_h, max(1, min(height // small_h, width // small_w) // GUIDE_SAMPLES)


def guide_image(pixels):
    """The photo box-averaged onto the working grid: (h, w, 1 or 3) uint8."""
    guide = GuideByRows(pixels)
    return guide.guide()


class GuideByRows:
    """The guide (guide_image) made while the photo's rows arrive, as preprocess.InputByRows:
    the box filter shrinks each row across once it is there, and the rows down at the end (in
    that order always: Pillow's own choice of order rounds differently)."""

    BATCH = 64          # sampled rows shrunk across at a time

    def __init__(self, pixels):
        self.pixels = pixels
        self.small_w, self.small_h, self.step = guide_grid(*pixels.shape[:2])
        rows = -(-pixels.shape[0] // self.step)
        self.across = np.empty((rows, self.small_w, 3 if pixels.shape[2] >= 3 else 1), np.uint8)
        self.done = 0           # sampled rows shrunk across

    def rows_arrived(self, count):
        ready = -(-count // self.step)
        if ready - self.done >= self.BATCH or (ready > self.done and count == self.pixels.shape[0]):
            rows = self.pixels[self.done * self.step:count:self.step, ::self.step]
            self.across[self.done:ready] = preprocess.resize_pillow(rows, self.small_w, ready - self.done,
                                                                    Image.Resampling.BOX)
            self.done = ready

    def guide(self):
        self.rows_arrived(self.pixels.shape[0])
        return preprocess.resize_pillow(self.across, self.small_w, self.small_h, Image.Resampling.BOX)


def correction_maps(pixels, mask, radius=RADIUS, eps=EPS, guide=None):
    """The residual filter's maps on the working grid: per colour a (per 0..255 value), then b.

    ``guide``: guide_image(pixels) when it is made already."""
    height, width = pixels.shape[:2]
    small_w, small_h = working_size(width, height)
    colours = pixels.shape[2] if pixels.shape[2] in (1, 3) else (3 if pixels.shape[2] == 4 else 1)
    guide = guide_image(pixels) if guide is None else guide
    guide = guide[:, :, :colours].astype(np.float64) / 255
    p = np.asarray(Image.fromarray(np.ascontiguousarray(mask, np.float32), "F")
                   .resize((small_w, small_h), Image.Resampling.BILINEAR), np.float64)
    maps = coefficients(guide, p, radius, eps)
    # Minus what the filter gives where the photo is flat (a box blur of the box blur of p):
    # there the bilinear mask stays as it is.
    flat = maps.pop()
    maps[-1] = maps[-1] - flat
    maps[:-1] = [a / 255 for a in maps[:-1]]
    return [m.astype(np.float32) for m in maps], guide * 255


def active_tiles(maps, guide):
    """Where on the working grid the correction may not be negligible, grown by one pixel.

    Its bound: the correction at the grid's own guide, plus what the colours' range among
    the eight neighbours (a pixel of the full photo lies between them) may add to it.
    """
    colours = len(maps) - 1
    size = np.abs(sum(maps[c] * guide[:, :, c] for c in range(colours)) + maps[-1])
    for c in range(colours):
        channel = guide[:, :, c]
        high, low = channel.copy(), channel.copy()
        padded = np.pad(channel, 1, mode="edge")
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                window = padded[dy:dy + channel.shape[0], dx:dx + channel.shape[1]]
                np.maximum(high, window, out=high)
                np.minimum(low, window, out=low)
        size += np.abs(maps[c]) * (high - low)
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


def refine(pixels, mask, depth=1, workers=1, progress=None, radius=RADIUS, eps=EPS, guide=None):
    """The photo (H, W, C) uint8, C in 1..4, and a float 0..1 mask of any size -> (H, W) mask.

    uint8 (depth 1) or uint16 (depth 2), like postprocess.upsample, which it equals wherever
    the photo shows no edge near the mask's outline.  ``mask`` may be the model's low-resolution
    output or a full-resolution mask (one painted by hand: its edges then snap to the photo's).
    ``guide``: guide_image(pixels), when it is made already (GuideByRows).
    """
    height, width = pixels.shape[:2]

    def stretch(workers):
        return postprocess.upsample(mask, width, height, depth, workers=workers,
                                    progress=None if progress is None else (lambda f: progress(f / 2)))

    if workers > 1:
        # The filter's maps on one core (most of it the photo shrunk, unless that was done as it
        # arrived) while the mask is stretched.
        with ThreadPoolExecutor(max_workers=1) as pool:
            maps_made = pool.submit(correction_maps, pixels, mask, radius, eps, guide)
            out = stretch(workers - 1)
            maps, grid_guide = maps_made.result()
    else:
        out = stretch(1)
        maps, grid_guide = correction_maps(pixels, mask, radius, eps, guide)
    active = active_tiles(maps, grid_guide)
    small_h, small_w = active.shape
    scale = 255.0 if depth == 1 else 65535.0
    images = [Image.fromarray(m, "F") for m in maps]
    colours = len(maps) - 1
    sx, sy = small_w / width, small_h / height
    band = max(1, min(height, int(np.ceil(8 / sy)), BAND_PIXELS // max(width, 1)))
    done = [0]
    lock = threading.Lock()

    def region(top, bottom, left, right):
        size = (right - left, bottom - top)
        # The bilinear mask already made (rounded: at most half a level more error).
        value = out[top:bottom, left:right].astype(np.float32)
        value *= np.float32(1 / scale)
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

    def refine_band(top):
        bottom = min(height, top + band)
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

    # Band by band, each worker taking the next: the outline's length varies along the photo.
    parallel.for_each(range(0, height, band), refine_band, workers)
    return out
