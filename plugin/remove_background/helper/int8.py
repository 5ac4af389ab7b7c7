"""An int8 model derived from an fp32/fp16 one on the user's machine (static quantisation).

The weights are quantised per channel (int8) and the activations (uint8) with ranges measured on
a fixed set of public-domain photos (model_fetch/calibration): onnxruntime's own quantiser, QDQ
format, which its CPU provider turns into int8 convolutions.  The recipe (which nodes stay in
float, how ranges are chosen) is the registry's "derive" entry, measured on ISNet with
tests/bench/bench_models.py.
Needs the ``onnx`` package and onnxruntime.quantization (part of onnxruntime); imported only to
derive a model, never to run one.
"""

import contextlib
import io
import logging
import re
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import fp32, preprocess


class PhotoReader:
    """onnxruntime's CalibrationDataReader over the calibration photos, one tensor at a time.

    Each photo as it is and, by the recipe, mirrored ("mirror"), shrunk to a few sizes and put
    on another of the photos ("small_subjects": long sides as fractions of the model's input,
    at fixed random places), and its middle half ("centre_crop").  The masks that differed most
    from the fp32 model's were of small subjects; with these photos (and each ReLU quantised
    with its convolution, not after it) the worst agreement on eval-dev went from 0.90 to
    0.92-0.94 IoU, depending on the places (tests/bench/bench_models.py).
    """

    def __init__(self, input_name, preprocess_spec, photos, recipe, progress):
        self.input_name = input_name
        self.spec = preprocess_spec
        self.photos = list(photos)
        self.sizes = list(recipe.get("small_subjects", []))
        self.items = []
        for index, photo in enumerate(self.photos):
            self.items.append(("", index, None))
            if recipe.get("mirror"):
                self.items.append(("mirrored", index, None))
            for size in self.sizes:
                self.items.append(("small", index, size))
            if recipe.get("centre_crop"):
                self.items.append(("centre", index, None))
        self.progress = progress
        self.start, self.end = 0, len(self.items)

    def __len__(self):
        return len(self.items)

    def set_range(self, start_index, end_index):
        self.start, self.end = start_index, end_index

    def get_next(self):
        if self.start >= self.end:
            if self.end == len(self.items):
                self.progress("choosing the ranges and quantising")
            return None
        kind, index, size = self.items[self.start]
        self.progress("calibrating on %s" % self.describe(kind, index, size), self.start, len(self.items))
        pixels = np.asarray(self.image(self.start).convert("RGB"))
        self.start += 1
        return {self.input_name: preprocess.model_input(pixels, self.spec).astype(np.float32)}

    def describe(self, kind, index, size):
        name = self.photos[index].name
        if kind == "small":
            return "%s at %g of the frame on %s" % (name, size, self.photos[self.background(index)].name)
        return "%s%s" % (name, {"": "", "mirrored": " mirrored", "centre": "'s middle"}[kind])

    def background(self, index):
        return (index + 2) % len(self.photos)

    def image(self, number):
        kind, index, size = self.items[number]
        photo = _open(self.photos[index])
        if kind == "mirrored":
            return photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if kind == "centre":
            width, height = photo.size
            return photo.crop((width // 4, height // 4, width * 3 // 4, height * 3 // 4))
        if kind == "small":
            side = max(self.spec["input_size"])
            frame = _open(self.photos[self.background(index)]).resize((side, side), Image.Resampling.BICUBIC)
            scale = size * side / max(photo.size)
            subject = photo.resize((int(photo.width * scale), int(photo.height * scale)), Image.Resampling.BICUBIC)
            # Fixed places: the same photos give the same model on every machine.
            place = np.random.default_rng(1000 + 10 * index + self.sizes.index(size))
            frame.paste(subject, (int(place.integers(0, side - subject.width)),
                                  int(place.integers(0, side - subject.height))))
            return frame
        return photo


def _open(path):
    with Image.open(path) as image:
        return image.convert("RGB")


def keep_one_output(model, index):
    """Drops every graph output but ``index`` (ISNet's side outputs cost time and go unused)."""
    kept = model.graph.output[index]
    del model.graph.output[:]
    model.graph.output.append(kept)
    return model


def work_dir(target):
    """The folder the fp32 form is written to while deriving (beside the target, removed after)."""
    return Path(target).with_name(Path(target).name + ".work")


def derive(source, target, preprocess_spec, recipe, photos, reduce_range=False, progress=None):
    """Writes the int8 form of the ONNX file ``source`` to ``target``; returns the seconds taken.

    ``recipe``: the registry's "derive" entry (method, percentile, op_types, "float": patterns of the
    node names left in float, and PhotoReader's mirror, small_subjects, centre_crop);
    ``photos``: the calibration photos; ``reduce_range``: 7-bit weights (x86 without VNNI);
    ``progress(step, done, total)`` is told of each photo.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    report = progress or (lambda step, done=0, total=None: None)
    started = time.monotonic()
    report("converting %s to fp32" % Path(source).name)
    model = onnx.load(str(source))
    fp32.convert(model)
    keep_one_output(model, preprocess_spec["output_index"])
    nodes = [node.name for node in model.graph.node if node.op_type in recipe["op_types"]]
    exclude = [name for name in nodes if any(re.search(pattern, name) for pattern in recipe.get("float", []))]
    work = work_dir(target)
    shutil.rmtree(work, ignore_errors=True)         # what a killed derivation left
    work.mkdir(parents=True)
    try:
        float_path = work / "fp32.onnx"
        onnx.save(model, str(float_path))
        input_name = model.graph.input[0].name
        del model
        reader = PhotoReader(input_name, preprocess_spec, photos, recipe, report)
        method = {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy,
                  "minmax": CalibrationMethod.MinMax}[recipe["method"]]
        extra = {"CalibStridedMinMax": 1}           # one photo at a time: bounded memory
        if "percentile" in recipe:
            extra["CalibPercentile"] = recipe["percentile"]
        # The quantiser prints its steps and logs advice; model_fetch's output is its own.
        logging.disable(logging.WARNING)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(float_path), str(target), reader, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=recipe["op_types"], per_channel=True,
                                reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=method,
                                extra_options=extra)
        finally:
            logging.disable(logging.NOTSET)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report("quantised with onnxruntime %s (%d of %d nodes in int8)"
           % (onnxruntime.__version__, len(nodes) - len(exclude), len(nodes)))
    return time.monotonic() - started
