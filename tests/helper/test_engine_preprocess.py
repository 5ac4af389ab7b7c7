"""The engine feeds every model exactly as its reference does, and picks the right output.

Expected values come from straight transcriptions of the references: IMG.LY's JavaScript
resize loop, and rembg's Pillow-based normalisation.
"""

import math

import numpy as np
import pytest
from PIL import Image

from onnx_models import random_image, spec, split_model
from remove_background.helper import engine, postprocess, preprocess

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
PILLOW = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
          "lanczos": Image.Resampling.LANCZOS}


def imgly_resize(image, new_width, new_height):
    """IMG.LY's tensorResizeBilinear (dist/index.cjs), line by line, in plain Python."""
    src_height, src_width, channels = image.shape
    pixels = image.tolist()
    scale_x = src_width / new_width
    scale_y = src_height / new_height
    out = [[[0] * channels for _ in range(new_width)] for _ in range(new_height)]
    for y in range(new_height):
        for x in range(new_width):
            src_x = x * scale_x
            src_y = y * scale_y
            x1 = max(math.floor(src_x), 0)
            x2 = min(math.ceil(src_x), src_width - 1)
            y1 = max(math.floor(src_y), 0)
            y2 = min(math.ceil(src_y), src_height - 1)
            dx = src_x - x1
            dy = src_y - y1
            for c in range(channels):
                p1 = pixels[y1][x1][c]
                p2 = pixels[y1][x2][c]
                p3 = pixels[y2][x1][c]
                p4 = pixels[y2][x2][c]
                value = (1 - dx) * (1 - dy) * p1 + dx * (1 - dy) * p2 + (1 - dx) * dy * p3 + dx * dy * p4
                out[y][x][c] = math_round(value)
    return np.array(out, dtype=np.uint8)


def math_round(value):
    """JavaScript's Math.round: the nearest integer, halves towards +infinity."""
    floor = math.floor(value)
    return floor + 1 if value - floor >= 0.5 else floor


def reference_tensor(image, description):
    """What the model should receive, as (3, h, w) float32, computed the references' way."""
    width, height = description["input_size"]
    if description["resize"] == "bilinear-point":
        rgb = image[:, :, :3] if image.shape[2] >= 3 else np.repeat(image[:, :, :1], 3, axis=2)
        small = imgly_resize(rgb, width, height)
    else:
        # rembg: img.convert("RGB").resize(size, filter)
        modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
        picture = Image.fromarray(image if image.shape[2] > 1 else image[:, :, 0], modes[image.shape[2]])
        small = np.array(picture.convert("RGB").resize((width, height), PILLOW[description["resize"]]))
    if description["channel_order"] == "BGR":
        small = small[:, :, ::-1]
    values = small.astype(np.float64)
    if description["divide_by"] == "max":
        values = values / max(np.max(values), 1e-6)
    else:
        values = values / description["divide_by"]
    out = np.empty((3, height, width))
    for c in range(3):
        out[c] = (values[:, :, c] - description["mean"][c]) / description["std"][c]
    return out.astype(np.float32)


def model_saw(model_path, image, description):
    """The three input channels the model received through the engine, read back one
    output at a time (output k of the split model is input channel k)."""
    seen = []
    for index in range(3):
        runner = engine.Engine(model_path, dict(description, output_index=index), threads=1)
        output = runner.infer(preprocess.model_input(image, runner.preprocess))
        seen.append(output[0, 0])
    return np.stack(seen)


@pytest.mark.parametrize("source_size", [(37, 23), (5, 7), (16, 12)])
def test_bilinear_point_is_imgly_resize_exactly(source_size):
    width, height = source_size
    image = random_image(width * height, height, width, 3)
    ours = preprocess.resize_bilinear_point(image, 16, 12)
    assert ours.dtype == np.uint8
    assert np.array_equal(ours, imgly_resize(image, 16, 12))


def test_bilinear_point_matches_at_model_size():
    # The real case: a photo of odd size stretched to 1024 x 1024 (rows checked in full).
    image = random_image(7, 300, 451, 3)
    reference = imgly_resize(image, 1024, 1024)
    assert np.array_equal(preprocess.resize_bilinear_point(image, 1024, 1024), reference)
    # Spread over threads in row blocks: still the same bytes.
    assert np.array_equal(preprocess.resize_bilinear_point(image, 1024, 1024, workers=3), reference)


@pytest.mark.parametrize("resize", ["bilinear-point", "bilinear", "lanczos", "bicubic"])
@pytest.mark.parametrize("divide_by", [1, 255, "max"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_model_input_matches_reference(model_dir, resize, divide_by, order):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    mean, std = ([128, 128, 128], [256, 256, 256]) if divide_by == 1 else (MEAN, STD)
    description = spec(input_size=[16, 12], resize=resize, divide_by=divide_by,
                       mean=mean, std=std, channel_order=order)
    image = random_image(hash((resize, str(divide_by), order)) % 1000, 29, 41, 3)
    image[..., 0] //= 2                                 # make the channels tell apart
    expected = reference_tensor(image, description)
    seen = model_saw(model, image, description)
    np.testing.assert_allclose(seen, expected, rtol=1e-6, atol=1e-6)
    # BGR really swaps: the first channel fed is the blue one.
    first = expected[0] if order == "RGB" else expected[2]
    assert not np.allclose(first, expected[2] if order == "RGB" else expected[0])


@pytest.mark.parametrize("resize", ["bilinear-point", "lanczos"])
@pytest.mark.parametrize("channels", [1, 2, 4])
def test_grey_and_alpha_inputs(model_dir, resize, channels):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    description = spec(input_size=[16, 12], resize=resize)
    image = random_image(channels, 40, 30, channels)
    if channels == 4:
        image[::3, :, 3] = 0                            # fully transparent rows still count
    expected = reference_tensor(image[:, :, :3] if channels == 4 else image, description)
    seen = model_saw(model, image, description)
    np.testing.assert_allclose(seen, expected, rtol=1e-6, atol=1e-6)
    if channels < 3:
        assert np.array_equal(seen[0], seen[1]) and np.array_equal(seen[1], seen[2])


def test_mask_end_to_end_at_model_size(model_dir):
    # input size = image size, value = p / 255: each output channel k is the image's
    # channel k again, so the 8-bit mask must equal it exactly.
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    image = random_image(3, 12, 16, 3)
    for index in range(3):
        for resize in ("bilinear-point", "bilinear", "lanczos"):
            description = spec(input_size=[16, 12], resize=resize, divide_by=255,
                               mean=[0, 0, 0], std=[1, 1, 1], output_index=index)
            mask = engine.Engine(model, description, threads=1).mask(image, refine=False)
            assert mask.dtype == np.uint8 and mask.shape == (12, 16)
            assert np.array_equal(mask, image[:, :, index]), (index, resize)


def test_output_selection_reads_the_asked_output(model_dir):
    model = split_model(model_dir / "split_const.onnx", 16, 12, constant=0.25)
    image = random_image(4, 12, 16, 3)
    constant = engine.Engine(model, spec(input_size=[16, 12], output_index=3), threads=1)
    assert constant.output_name == "k"
    assert np.all(constant.mask(image) == 64)            # round(0.25 * 255)
    first = engine.Engine(model, spec(input_size=[16, 12], output_index=0), threads=1)
    assert first.output_name == "c0"
    assert not np.all(first.mask(image) == 64)


def test_sigmoid_min_max_and_clipping(model_dir):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    image = random_image(5, 12, 16, 3)
    base = dict(input_size=[16, 12], divide_by=1, mean=[128, 128, 128], std=[32, 32, 32])
    raw = (image[:, :, 0].astype(np.float64) - 128) / 32          # -4 .. 4

    def float_mask(**changes):
        runner = engine.Engine(model, spec(**base, **changes), threads=1)
        output = runner.infer(preprocess.model_input(image, runner.preprocess))
        return postprocess.mask_from_output(output, runner.preprocess)

    np.testing.assert_allclose(float_mask(activation="sigmoid"), 1 / (1 + np.exp(-raw)), atol=1e-6)
    np.testing.assert_allclose(float_mask(), np.clip(raw, 0, 1), atol=1e-6)
    np.testing.assert_allclose(float_mask(min_max=True), (raw - raw.min()) / (raw.max() - raw.min()),
                               atol=1e-6)
    sig = 1 / (1 + np.exp(-raw))
    np.testing.assert_allclose(float_mask(activation="sigmoid", min_max=True),
                               (sig - sig.min()) / (sig.max() - sig.min()), atol=1e-6)


def test_sixteen_bit_mask(model_dir):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    image = random_image(6, 12, 16, 3)
    description = spec(input_size=[16, 12], divide_by=255, mean=[0, 0, 0], std=[1, 1, 1])
    mask = engine.Engine(model, description, threads=1).mask(image, depth=2, refine=False)
    assert mask.dtype == np.uint16
    expected = np.floor(image[:, :, 0].astype(np.float32) / 255 * 65535 + 0.5)
    assert np.abs(mask.astype(np.int64) - expected).max() <= 1
    assert mask.max() > 255                              # really 16-bit, not 8-bit widened


def arriving(image, sizes, make, seed=0):
    """``make(buffer)`` fed ``image`` from the top in pieces of random row counts up to ``sizes``,
    as a helper receives a photo from the pipe; returns what make() gave."""
    rng = np.random.default_rng(seed)
    buffer = np.zeros_like(image)
    made = make(buffer)
    filled = 0
    while filled < image.shape[0]:
        rows = min(image.shape[0], filled + int(rng.integers(1, sizes + 1)))
        buffer[filled:rows] = image[filled:rows]
        filled = rows
        made.rows_arrived(filled)
    return made


@pytest.mark.parametrize("resize", ["bilinear-point", "lanczos"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_the_input_made_as_rows_arrive_is_the_input_of_the_whole_photo(resize, channels):
    for number, (height, width, size) in enumerate([(300, 451, [1024, 1024]), (2000, 37, [320, 320]),
                                                    (5, 900, [16, 12]), (1, 1, [8, 8])]):
        image = random_image(number * 10 + channels, height, width, channels)
        description = spec(input_size=size, resize=resize, divide_by="max" if number % 2 else 255,
                           mean=MEAN, std=STD)
        expected = preprocess.model_input(image, description)
        made = arriving(image, 97, lambda buffer: preprocess.InputByRows(buffer, description, workers=2), number)
        assert np.array_equal(made.tensor(), expected), (height, width)
        if resize == "bilinear-point" and height > 100:
            assert made.done > 0            # rows were made before the photo was all there
