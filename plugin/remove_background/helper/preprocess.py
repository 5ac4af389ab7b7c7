"""From 8-bit pixels of any size to a model's input tensor, exactly as each model's reference does.

The registry's "preprocess" entry says how (see model_fetch/registry.json):
  input_size [w, h]; resize "bilinear-point" (IMG.LY's own resize) or a Pillow filter
  ("bilinear", "bicubic", "lanczos", "box", "hamming", "nearest", as rembg uses them);
  value = ((pixel / divide_by) - mean) / std per channel, divide_by 1, 255 or "max"
  (the resized image's maximum, as rembg does); channel_order "RGB" or "BGR".

The full-resolution image stays uint8 throughout: it is shrunk first, and only the
model-sized result becomes float.
"""

import numpy as np
from model_fetch.registry import PREPROCESS_KEYS
from PIL import Image

from . import parallel

PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZES = ("bilinear-point",) + tuple(PILLOW_FILTERS)
CACHE_ROWS = 16


def check(preprocess):
    """Raises ValueError unless ``preprocess`` is a complete, usable description."""
    missing = [key for key in PREPROCESS_KEYS if key not in preprocess]
    if missing:
        raise ValueError("preprocess lacks %s" % ", ".join(missing))
    size = preprocess["input_size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(n, int) and n > 0 for n in size)):
        raise ValueError("input_size must be [width, height], got %r" % (size,))
    if preprocess["resize"] not in RESIZES:
        raise ValueError("unknown resize %r (known: %s)" % (preprocess["resize"], ", ".join(RESIZES)))
    if preprocess["divide_by"] not in (1, 255, "max"):
        raise ValueError("divide_by must be 1, 255 or \"max\", got %r" % (preprocess["divide_by"],))
    for key in ("mean", "std"):
        values = preprocess[key]
        if (not isinstance(values, (list, tuple)) or len(values) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise ValueError("%s needs 3 numbers, got %r" % (key, values))
    if not all(s != 0 for s in preprocess["std"]):
        raise ValueError("std may not be 0")
    if preprocess["channel_order"] not in ("RGB", "BGR"):
        raise ValueError("channel_order must be RGB or BGR")
    if preprocess["activation"] not in ("none", "sigmoid"):
        raise ValueError("activation must be none or sigmoid")
    index = preprocess["output_index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError("output_index must be an integer >= 0, got %r" % (index,))
    if not isinstance(preprocess["min_max"], bool):
        raise ValueError("min_max must be true or false")


def resize_bilinear_point(pixels, width, height, workers=1, rows=None, out=None):
    """IMG.LY's tensorResizeBilinear, reproduced exactly, for the colour channels (grey: 1).

    For each output pixel: srcX = x * (srcWidth / width) (no half-pixel offset),
    x1 = floor, x2 = min(ceil, srcWidth - 1), the four neighbours blended in double
    precision in the reference's own order, then Math.round to uint8.  Only the source
    rows and columns the output grid touches are gathered from the uint8 source.

    ``rows`` (first, last): only those output rows, into ``out`` (an earlier call's result);
    output row i reads the source rows up to last_source_rows(src_h, height)[i].
    """
    src_h, src_w, channels = pixels.shape
    colours = 3 if channels >= 3 else 1
    first, last = rows if rows is not None else (0, height)
    src_x = np.arange(width, dtype=np.float64) * (src_w / width)
    src_y = np.arange(height, dtype=np.float64) * (src_h / height)
    x1 = np.floor(src_x).astype(np.intp)
    x2 = np.minimum(np.ceil(src_x).astype(np.intp), src_w - 1)
    y1 = np.floor(src_y).astype(np.intp)
    y2 = last_source_rows(src_h, height)
    # Rows are worked on flat, as (x, channel) values: these pick the colour channels of
    # the left and right neighbours, and dx repeats per channel to match.
    channel = np.arange(colours)
    left = (x1[:, np.newaxis] * channels + channel).reshape(-1)
    right = (x2[:, np.newaxis] * channels + channel).reshape(-1)
    dx = np.repeat(src_x - x1, colours)[np.newaxis, :]
    dy = (src_y - y1)[:, np.newaxis]
    source_rows = pixels.reshape(src_h, src_w * channels)
    if out is None:
        out = np.empty((height, width, colours), np.uint8)
    flat = out.reshape(height, width * colours)

    def block(start, stop):
        ry = dy[start:stop]
        above = source_rows[y1[start:stop]]
        below = source_rows[y2[start:stop]]
        corners = (above.take(left, axis=1), above.take(right, axis=1),
                   below.take(left, axis=1), below.take(right, axis=1))
        del above, below
        # The reference's terms, in its order: (1-dx)*(1-dy)*p1 + dx*(1-dy)*p2 + (1-dx)*dy*p3 + dx*dy*p4
        weights = ((1 - dx) * (1 - ry), dx * (1 - ry), (1 - dx) * ry, dx * ry)
        value = np.multiply(weights[0], corners[0])
        term = np.empty_like(value)
        for weight, corner in zip(weights[1:], corners[1:]):
            np.multiply(weight, corner, out=term)
            value += term
        # Math.round (halves up): floor, plus one where the fraction is >= 0.5.
        rounded = np.floor(value)
        np.subtract(value, rounded, out=term)
        rounded += term >= 0.5
        flat[start:stop] = rounded

    def blocks(start, stop):
        # A few rows at a time keep the float scratch arrays in the CPU cache (3x faster).
        for top in range(first + start, first + stop, CACHE_ROWS):
            block(top, min(first + stop, top + CACHE_ROWS))

    parallel.for_row_blocks(last - first, blocks, workers)
    return out


def last_source_rows(src_h, height):
    """For each output row of resize_bilinear_point, the last source row it reads."""
    src_y = np.arange(height, dtype=np.float64) * (src_h / height)
    return np.minimum(np.ceil(src_y).astype(np.intp), src_h - 1)


def resize_pillow(pixels, width, height, resample):
    """Pillow's resize of the colour channels, alpha ignored (as rembg's img.convert("RGB"))."""
    src_h, src_w, channels = pixels.shape
    if channels == 4 and pixels.flags.c_contiguous:
        # "RGBX" shares the buffer and, unlike "RGBA", is not premultiplied while resizing.
        image = Image.frombuffer("RGBX", (src_w, src_h), pixels, "raw", "RGBX", 0, 1)
    elif channels == 3:
        image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    elif channels == 4:
        image = Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]), "RGB")
    else:
        grey = pixels[:, :, 0]
        if grey.flags.c_contiguous:
            image = Image.frombuffer("L", (src_w, src_h), grey, "raw", "L", 0, 1)
        else:
            image = Image.fromarray(np.ascontiguousarray(grey), "L")
    small = image.resize((width, height), resample)
    out = np.asarray(small)
    if out.ndim == 2:
        return out[:, :, np.newaxis]
    return out[:, :, :3]


def model_input(pixels, preprocess, workers=1):
    """(H, W, C) uint8 with C in 1..4 -> float32 tensor (1, 3, h, w) for the model."""
    width, height = preprocess["input_size"]
    resize = preprocess["resize"]
    if resize == "bilinear-point":
        small = resize_bilinear_point(pixels, width, height, workers)
    else:
        small = resize_pillow(pixels, width, height, PILLOW_FILTERS[resize])
    return normalized(small, preprocess)


def normalized(small, preprocess):
    """The model-sized uint8 image -> the float32 tensor (1, 3, h, w) the model takes."""
    height, width = small.shape[:2]
    divide_by = preprocess["divide_by"]
    if divide_by == "max":
        divide_by = max(float(small.max()), 1e-6)
    order = (0, 1, 2) if preprocess["channel_order"] == "RGB" else (2, 1, 0)
    tensor = np.empty((1, 3, height, width), np.float32)
    levels = np.arange(256, dtype=np.float64)
    for index, colour in enumerate(order):
        # Each of the 256 values in double precision, then one rounding to float32 (what both
        # references compute), looked up for every pixel.
        values = levels / divide_by if divide_by != 1 else levels.copy()
        values -= preprocess["mean"][index]
        values /= preprocess["std"][index]
        # Grey has one channel: it is R, G and B (as Pillow's convert("RGB")).
        plane = small[:, :, colour if small.shape[2] == 3 else 0]
        np.take(values.astype(np.float32), plane, out=tensor[0, index])
    return tensor


class InputByRows:
    """model_input() made while the photo's rows arrive (a helper receiving them down a pipe).

    ``pixels``: the (H, W, C) uint8 array being filled from the top; rows_arrived(n) says that
    its first n rows are there.  With IMG.LY's resize the model's rows are made as soon as the
    photo's rows they read are in; Pillow's resizes are made at the end.  tensor() is then the
    same as model_input(pixels, preprocess) (tested).
    """

    def __init__(self, pixels, preprocess, workers=1):
        self.pixels = pixels
        self.preprocess = preprocess
        self.workers = workers
        self.width, self.height = preprocess["input_size"]
        self.done = 0
        self.small = None
        if preprocess["resize"] == "bilinear-point":
            self.needed = last_source_rows(pixels.shape[0], self.height)
            self.small = np.empty((self.height, self.width, 3 if pixels.shape[2] >= 3 else 1), np.uint8)

    def rows_arrived(self, count, workers=1):
        if self.small is None:
            return
        ready = int(np.searchsorted(self.needed, count, side="left"))      # rows needing only rows < count
        if ready > self.done:
            resize_bilinear_point(self.pixels, self.width, self.height, workers, rows=(self.done, ready),
                                  out=self.small)
            self.done = ready

    def tensor(self):
        if self.small is None:
            return model_input(self.pixels, self.preprocess, self.workers)
        self.rows_arrived(self.pixels.shape[0], self.workers)
        return normalized(self.small, self.preprocess)
