"""Tiny ONNX models written by the tests (tests/helper, tests/command, the benchmark).

The "split" model takes the usual 1x3xHxW input and returns each input channel as its own
1x1xHxW output (output k = channel k), plus a constant output, so a test can read back
exactly what the engine fed the model and prove which output it picked.
"""

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = json.loads((ROOT / "model_fetch" / "registry.json").read_text())
ISNET_PREPROCESS = REGISTRY["models"]["isnet"]["preprocess"]


def save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def split_model(path, width, height, constant=0.25):
    """Outputs: "c0", "c1", "c2" = the input's channels; "k" = ``constant`` everywhere."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, height, width])
            for name in ("c0", "c1", "c2", "k")]
    split = helper.make_node("Split", ["input"], ["c0", "c1", "c2"], axis=1, num_outputs=3)
    # k = c0 * 0 + constant: a real computation, independent of the image.
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    value = helper.make_tensor("value", TensorProto.FLOAT, [], [constant])
    nodes = [split,
             helper.make_node("Mul", ["c0", "zero"], ["c0_zero"]),
             helper.make_node("Add", ["c0_zero", "value"], ["k"])]
    graph = helper.make_graph(nodes, "split", [x], outs, initializer=[zero, value])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return save(model, path)


def red_mask_model(path, width=1024, height=1024):
    """For ISNet's preprocessing ((p - 128) / 256): outputs (256 x + 128) / 255 of the red
    channel, i.e. the mask equals the red channel / 255.  Lets CLI tests choose the mask."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, height, width])
    tensors = [helper.make_tensor(name, TensorProto.FLOAT, [], [value])
               for name, value in (("scale", 256.0 / 255.0), ("shift", 128.0 / 255.0))]
    nodes = [helper.make_node("Split", ["input"], ["r", "g", "b"], axis=1, num_outputs=3),
             helper.make_node("Mul", ["r", "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "shift"], ["output"])]
    graph = helper.make_graph(nodes, "red_mask", [x], [out], initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return save(model, path)


def replay_model(path, recorded, width=1024, height=1024):
    """Returns ``recorded`` (a float32 array) whatever its input: a real model's output,
    replayed at no cost, so that the benchmark can time everything except inference."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(recorded.shape))
    constant = onnx.numpy_helper.from_array(np.asarray(recorded, np.float32), "recorded")
    graph = helper.make_graph([helper.make_node("Identity", ["recorded"], ["output"])],
                              "replay", [x], [out], initializer=[constant])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return save(model, path)


def spec(**changes):
    """A preprocess description: ISNet's, with ``changes``."""
    result = copy.deepcopy(ISNET_PREPROCESS)
    result.update(changes)
    return result


def random_image(seed, height, width, channels):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
