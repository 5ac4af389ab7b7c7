"""From a model's raw output to the mask at the image's own size."""

import threading

import numpy as np
from PIL import Image

from . import parallel

# Rows of the full-size mask computed at once: bounds the float scratch memory
# (BAND_PIXELS float32 values) whatever the image size.
BAND_PIXELS = 4 * 1024 * 1024


def mask_from_output(output, preprocess):
    """The model's chosen output -> float32 (h, w) mask in 0..1.

    output[0, 0] (leading unit axes dropped), then the activation, then per-image
    min-max if asked, then clipped to 0..1.
    """
    mask = np.asarray(output)
    while mask.ndim > 2:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError("the model's output has shape %r, not an image" % (np.shape(output),))
    mask = mask.astype(np.float32)          # a copy: the session's buffer is left alone
    if preprocess["activation"] == "sigmoid":
        np.negative(mask, out=mask)
        np.exp(mask, out=mask)
        mask += 1
        np.reciprocal(mask, out=mask)
    if preprocess["min_max"]:
        low, high = float(mask.min()), float(mask.max())
        mask -= low
        if high > low:
            mask /= high - low
    np.clip(mask, 0, 1, out=mask)
    return mask


def upsample(mask, width, height, depth=1, progress=None, workers=1):
    """The float 0..1 mask -> (height, width) uint8 (depth 1) or uint16 (depth 2).

    Bilinear on the float mask (pixel centres aligned, Pillow's triangle filter, which
    also averages properly when shrinking): no ringing or halos, unlike Lanczos.
    Done in horizontal bands so that a 16000x16000 image needs only a few bands of floats.
    """
    small_h, small_w = mask.shape
    scale = 255.0 if depth == 1 else 65535.0
    out = np.empty((height, width), np.uint8 if depth == 1 else np.uint16)
    # Scaled and offset before resizing (bilinear weights sum to 1, so this commutes):
    # each band then only needs truncating to integers, which rounds.
    scaled = np.clip(mask, 0, 1).astype(np.float32) * np.float32(scale)
    scaled += np.float32(0.5)
    source = Image.fromarray(scaled, "F")
    band = max(1, min(height, BAND_PIXELS // max(width, 1)))
    row_scale = small_h / height
    done = [0]
    lock = threading.Lock()

    def bands(start, stop):
        for top in range(start, stop, band):
            bottom = min(stop, top + band)
            # The band's own source box: the filter windows match those of one whole resize.
            box = (0.0, top * row_scale, float(small_w), bottom * row_scale)
            part = source.resize((width, bottom - top), Image.Resampling.BILINEAR, box=box)
            if depth == 1:
                part = part.convert("L")    # truncates and clips, in C: a quarter of the bytes
            out[top:bottom] = np.asarray(part)
            with lock:                  # one progress report at a time, whichever thread
                done[0] += bottom - top
                if progress is not None:
                    progress(done[0] / height)

    parallel.for_row_blocks(height, bands, workers)
    return out
