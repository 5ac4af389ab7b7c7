"""Models made from others on this machine: fp16 weights turned fp32, and int8 models quantised here.

Tiny fp16 models are built in the test, in the layout of IMG.LY's ISNet file (fp16 weights, Casts
around them, the Casts listed last); the real isnet-int8 is compared with isnet on the CC0 photos.
"""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import model_fetch
from needs import FIXTURES, ROOT, need
from model_fetch import Registry, Store
from model_fetch.cache import read_stamp, stamp_path
from remove_background.command import cli
from remove_background.helper import engine, fp32
from onnx_models import spec

SIZE = 32


def tiny_fp16_model(path, seed=0):
    """input (float) -> Cast fp16 -> Conv 3x3 -> Relu -> Conv 3x3 -> Mul by a Constant -> Sigmoid
    -> Cast float -> output; weights fp16; the Cast nodes listed after the others (not sorted)."""
    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * 0.4).astype(np.float16), name)
               for name, shape in (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (1, 8, 3, 3)), ("b2", (1,)))]
    half = numpy_helper.from_array(np.array(1.5, np.float16), "k")
    nodes = [
        helper.make_node("Conv", ["x16", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["h2"], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["scale"], value=half),
        helper.make_node("Mul", ["h2", "scale"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["y16"]),
        helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["y16"], ["output"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "tiny_fp16",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, SIZE, SIZE])],
        initializer=weights,
        value_info=[helper.make_tensor_value_info("h1", TensorProto.FLOAT16, [1, 8, SIZE, SIZE])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.save(model, str(path))           # not onnx.checker: the node order is IMG.LY's, unsorted
    return path


def run(model, tensor):
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": tensor})[0]


def photo_tensor(seed=1):
    rng = np.random.default_rng(seed)
    return (rng.random((1, 3, SIZE, SIZE), dtype=np.float32) - 0.5)


def fp16_anywhere(model):
    tensors = list(model.graph.initializer) + [attribute.t for node in model.graph.node
                                               for attribute in node.attribute if attribute.HasField("t")]
    casts = [attribute.i for node in model.graph.node if node.op_type == "Cast"
             for attribute in node.attribute if attribute.name == "to"]
    return (any(t.data_type == TensorProto.FLOAT16 for t in tensors) or TensorProto.FLOAT16 in casts
            or any(v.type.tensor_type.elem_type == TensorProto.FLOAT16 for v in model.graph.value_info))


def test_fp16_model_converts_to_fp32_with_the_same_outputs(tmp_path):
    path = tiny_fp16_model(tmp_path / "tiny.onnx")
    model = onnx.load(str(path))
    assert fp32.is_fp16(model) and fp16_anywhere(model)
    converted = fp32.convert(onnx.load(str(path)))
    assert not fp16_anywhere(converted) and not fp32.is_fp16(converted)
    onnx.checker.check_model(converted)                 # sorted now, as ONNX requires
    for seed in range(3):
        tensor = photo_tensor(seed)
        expected, got = run(path, tensor), run(converted, tensor)
        assert got.dtype == np.float32 and got.shape == expected.shape
        # The fp16 file rounds every intermediate result to fp16 (3 decimal digits).
        np.testing.assert_allclose(got, expected, atol=2e-3)
    assert fp32.cpu_form(path) == converted.SerializeToString()
    plain = tmp_path / "plain.onnx"
    onnx.save(converted, str(plain))
    assert fp32.cpu_form(plain) is None                   # an fp32 file is used as it is


def test_the_graph_saved_for_the_cpu_is_made_from_the_fp32_form(tmp_path):
    path = tiny_fp16_model(tmp_path / "tiny.onnx")
    preprocess = spec(input_size=[SIZE, SIZE])
    pixels = fixture_pixels()
    # The model's own output compared: no refinement of the mask with the photo.
    plain = engine.Engine(path, preprocess, threads=1).mask(pixels, refine=False).astype(int)
    first = engine.Engine(path, preprocess, threads=1, optimized_dir=tmp_path / "derived", identity="sha256:tiny")
    saved = [p for p in (tmp_path / "derived").iterdir() if p.suffix == ".onnx"]
    assert len(saved) == 1 and not fp16_anywhere(onnx.load(str(saved[0])))
    second = engine.Engine(path, preprocess, threads=1, optimized_dir=tmp_path / "derived", identity="sha256:tiny")
    assert second.opened == str(saved[0])
    for runner in (first, second):
        assert np.abs(runner.mask(pixels, refine=False).astype(int) - plain).max() <= 1


def side_outputs_model(path):
    """fp32, ISNet's layout in small: input -> Conv -> Relu "r1" -> Conv -> Sigmoid "output", and
    "side" (a Conv of r1 and a Sigmoid) also a graph output; r1 is one too, and read by others."""
    rng = np.random.default_rng(3)
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * 0.4).astype(np.float32), name)
               for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (1, 8, 3, 3)), ("w3", (1, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["h1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["h2"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["h2"], ["output"]),
             helper.make_node("Conv", ["r1", "w3"], ["h3"]),
             helper.make_node("Sigmoid", ["h3"], ["side"])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, SIZE, SIZE])
               for name, channels in (("output", 1), ("side", 1), ("r1", 8))]
    graph = helper.make_graph(nodes, "side_outputs", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])], outputs, initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_the_cpu_form_computes_only_the_output_used(tmp_path):
    path = side_outputs_model(tmp_path / "sides.onnx")
    tensor = photo_tensor()
    original = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": tensor})
    for index in (0, 1):
        form = onnx.ModelProto.FromString(fp32.cpu_form(path, index))
        onnx.checker.check_model(form)
        assert [o.name for o in form.graph.output] == ["output", "side", "r1"]     # numbers kept
        got = onnxruntime.InferenceSession(form.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"input": tensor})
        np.testing.assert_array_equal(got[index], original[index])
        other = 1 - index
        assert got[other].size == 1 and original[other].size == SIZE * SIZE       # not computed
        # ... and the branch that made it is gone (onnxruntime would run it all the same).
        branch, weight = {0: ("h3", "w3"), 1: ("h2", "w2")}[index]
        assert branch not in {name for node in form.graph.node for name in node.output}
        assert weight not in {tensor.name for tensor in form.graph.initializer}
        assert len(form.graph.node) == 5        # Conv, Relu, the used Conv and Sigmoid, a Constant
        np.testing.assert_array_equal(got[2], original[2])     # read by other nodes: computed anyway
    # A file of the older kind that also lists its weights as graph inputs keeps one input to feed.
    listed = onnx.load(str(path))
    listed.graph.input.extend(helper.make_tensor_value_info(tensor.name, TensorProto.FLOAT, list(tensor.dims))
                              for tensor in listed.graph.initializer)
    onnx.save(listed, str(tmp_path / "listed.onnx"))
    form = onnx.ModelProto.FromString(fp32.cpu_form(tmp_path / "listed.onnx", 0))
    assert "w3" not in {value.name for value in form.graph.input}
    session = onnxruntime.InferenceSession(form.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [each.name for each in session.get_inputs()] == ["input"]
    # (Weights that could be fed are not pre-packed as constants are: the last bit may differ.)
    np.testing.assert_allclose(session.run(["output"], {"input": tensor})[0], original[0], rtol=1e-5)
    # The engine's saved graph is of the output its preprocessing names, one graph for each.
    pixels = fixture_pixels()
    for index in (0, 1):
        preprocess = spec(input_size=[SIZE, SIZE], output_index=index)
        plain = engine.Engine(path, preprocess, threads=1).mask(pixels, refine=False)
        for _start in range(2):             # saving the graph, then opening it
            saved = engine.Engine(path, preprocess, threads=1, optimized_dir=tmp_path / "derived",
                                  identity="sha256:sides")
            np.testing.assert_array_equal(saved.mask(pixels, refine=False), plain)
        assert saved.opened != str(path)
    assert len([p for p in (tmp_path / "derived").iterdir() if p.suffix == ".onnx"]) == 2


def test_a_left_out_optional_input_keeps_no_dead_node():
    # "output" = Clip(input, min left out, max); a dead Dropout that leaves out its optional mask.
    nodes = [helper.make_node("Dropout", ["input"], ["dead", ""]),
             helper.make_node("Clip", ["input", "", "high"], ["output"])]
    graph = helper.make_graph(
        nodes, "optional", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        initializer=[numpy_helper.from_array(np.array(0.25, np.float32), "high")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    assert fp32.drop_unneeded(model.graph) == 1
    assert [node.op_type for node in model.graph.node] == ["Clip"]
    onnx.checker.check_model(model)


# -- int8 models derived through model_fetch -----------------------------------------------------

RECIPE = {"kind": "int8", "method": "percentile", "percentile": 99.999, "op_types": ["Conv"], "float": [],
          "mirror": False}


def store_with_tiny_models(folder, recipe=RECIPE):
    """A Store whose registry has "tiny" (the fp16 model, imported) and "tiny-int8" derived from it."""
    import hashlib

    source = tiny_fp16_model(folder / "tiny-download.onnx")
    preprocess = spec(input_size=[SIZE, SIZE])
    registry = {"default_order": ["tiny"], "models": {
        "tiny": {"title": "tiny", "description": "test", "license": "MIT", "commercial_use": True,
                 "file": "tiny.onnx", "size": source.stat().st_size,
                 "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                 "sources": [{"type": "https", "urls": ["https://10.255.255.1/tiny.onnx"]}],
                 "preprocess": preprocess},
        "tiny-int8": {"title": "tiny int8", "description": "test", "license": "MIT", "commercial_use": True,
                      "file": "tiny-int8.onnx", "derived_from": "tiny", "derive": recipe,
                      "preprocess": preprocess}}}
    (folder / "registry.json").write_text(json.dumps(registry))
    store = Store(Registry.load(folder / "registry.json"), folder / "cache")
    store.import_file("tiny", source)
    return store


def mask_of(path, pixels):
    return engine.Engine(path, spec(input_size=[SIZE, SIZE]), threads=1).mask(pixels, refine=False)


def fixture_pixels():
    return cli.pixels_of(cli.load_image(FIXTURES / "coffee.png"))


def test_the_calibration_images_follow_the_recipe(tmp_path):
    from PIL import Image

    from model_fetch import derive
    from remove_background.helper import int8

    isnet = model_fetch.get("isnet-int8")
    photos = derive.calibration_photos()
    steps = []

    def reader():
        return int8.PhotoReader("input", isnet.preprocess, photos, isnet.derive,
                                lambda step, done=0, total=None: steps.append(step))

    first, second = reader(), reader()
    per_photo = 1 + isnet.derive["mirror"] + len(isnet.derive["small_subjects"]) + isnet.derive["centre_crop"]
    assert len(first) == len(photos) * per_photo == 30
    tensors = [first.get_next()["input"] for _ in range(len(first))]
    assert first.get_next() is None and steps[-1] == "choosing the ranges and quantising"
    assert all(t.shape == (1, 3, 1024, 1024) and t.dtype == np.float32 for t in tensors)
    assert all(np.array_equal(t, second.get_next()["input"]) for t in tensors)      # the same on every run
    assert len({t.tobytes() for t in tensors}) == len(tensors)                      # no two alike
    # A small subject: the photo shrunk, on another photo of the set.
    number = next(i for i, (kind, index, size) in enumerate(first.items) if kind == "small" and size == 0.2)
    composite = np.asarray(first.image(number))
    _kind, index, _size = first.items[number]
    with Image.open(photos[(index + 2) % len(photos)]) as frame:
        frame = np.asarray(frame.convert("RGB").resize((1024, 1024), Image.Resampling.BICUBIC)).astype(int)
    changed = np.abs(composite.astype(int) - frame).sum(axis=2) > 0
    assert 0.015 < changed.mean() <= 0.045        # 0.2 of the long side: at most 0.2 x 0.2 of the frame
    assert "at 0.2 of the frame on %s" % photos[(index + 2) % len(photos)].name in " ".join(steps)


def test_int8_model_is_derived_stamped_verified_and_loaded(tmp_path):
    store = store_with_tiny_models(tmp_path)
    assert not store.is_installed("tiny-int8") and store.can_fetch("tiny-int8")
    steps = []
    path = store.fetch("tiny-int8", progress=lambda step, done, total: steps.append(step))
    assert path == tmp_path / "cache" / "tiny-int8.onnx" and store.is_installed("tiny-int8")
    photos = sorted(p.name for p in (ROOT / "model_fetch" / "calibration").iterdir() if p.suffix == ".jpg")
    assert [s for s in steps if "calibrating" in s] == [
        "tiny-int8: calibrating on %s (%d of %d)" % (name, n + 1, len(photos)) for n, name in enumerate(photos)]
    record = read_stamp(path)
    assert record["kind"] == "derived" and record["notes"]["onnxruntime"] == onnxruntime.__version__
    assert record["content"][0] == "sha256" and len(record["content"][1]) == 64
    assert record["notes"]["derived_from"] == "tiny" and record["notes"]["seconds"] >= 0
    # It is int8: convolutions between QuantizeLinear and DequantizeLinear, int8 weights.
    quantised = onnx.load(str(path))
    ops = [node.op_type for node in quantised.graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("Conv") == 2
    assert any(t.data_type == TensorProto.INT8 for t in quantised.graph.initializer)
    # A second fetch does nothing; verify rehashes it against the hash it was made with.
    made = path.stat().st_mtime_ns
    steps.clear()
    assert store.fetch("tiny-int8", progress=lambda step, done, total: steps.append(step)) == path
    assert steps == [] and path.stat().st_mtime_ns == made
    assert store.verify("tiny-int8")
    # The engine loads it, and its mask is the float model's within int8's precision.
    pixels = fixture_pixels()
    float_mask = mask_of(store.installed_path("tiny"), pixels).astype(int)
    int8_mask = mask_of(path, pixels).astype(int)
    assert int8_mask.shape == float_mask.shape
    assert np.abs(int8_mask - float_mask).mean() < 3 and np.abs(int8_mask - float_mask).max() < 40
    assert store.identity("tiny-int8") == "sha256:" + record["content"][1]
    assert store.remove("tiny-int8") and not path.exists() and not stamp_path(path).exists()
    assert store.is_installed("tiny")                     # its source stays


def test_derived_model_follows_its_recipe_and_source(tmp_path):
    store = store_with_tiny_models(tmp_path)
    store.fetch("tiny-int8")
    registry = json.loads((tmp_path / "registry.json").read_text())
    registry["models"]["tiny-int8"]["derive"] = dict(RECIPE, percentile=99.99)
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    changed = Store(Registry.load(tmp_path / "registry.json"), tmp_path / "cache")
    assert not changed.is_installed("tiny-int8")          # another recipe: made again when fetched
    changed.fetch("tiny-int8")
    assert changed.is_installed("tiny-int8")
    with pytest.raises(model_fetch.FetchError, match="made on this machine from tiny"):
        changed.import_file("tiny-int8", tmp_path / "tiny-download.onnx")


def test_a_damaged_derived_file_is_never_used(tmp_path, monkeypatch):
    store = store_with_tiny_models(tmp_path)
    path = store.fetch("tiny-int8")
    data = bytearray(path.read_bytes())
    # Changed in place (same size, mtime put back, so its stamp still matches): verify finds it.
    stat = path.stat()
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.is_installed("tiny-int8") and not store.verify("tiny-int8")
    assert not path.exists() and not store.is_installed("tiny-int8")
    # Cut short: hashed again when the engine asks for it, found bad, deleted, a clear error;
    # the next fetch makes it again.
    store.fetch("tiny-int8")
    path.write_bytes(path.read_bytes()[:1000])
    monkeypatch.setenv("REMOVE_BACKGROUND_MODELS", str(store.cache_dir))
    monkeypatch.setattr(model_fetch, "_store", store)
    with pytest.raises(model_fetch.ModelDamaged):
        engine.load("tiny-int8")
    assert not path.exists() and not store.is_installed("tiny-int8")
    with pytest.raises(model_fetch.ModelNotInstalled):
        engine.load("tiny-int8")
    store.fetch("tiny-int8")
    assert store.is_installed("tiny-int8") and store.verify("tiny-int8")
    first, second = engine.load("tiny-int8"), engine.load("tiny-int8")   # the second from its saved graph
    assert first.opened == str(path) and second.opened.startswith(str(store.derived_dir("tiny-int8")))
    assert np.array_equal(first.mask(fixture_pixels()), second.mask(fixture_pixels()))


def test_listing_a_derived_model_imports_no_onnxruntime(tmp_path):
    code = ("import sys, model_fetch; model_fetch.is_installed('isnet-int8'); model_fetch.models();"
            "assert 'onnxruntime' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=dict(os.environ, REMOVE_BACKGROUND_MODELS=str(tmp_path)))


# -- the real isnet-int8 -----------------------------------------------------------------------------

def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("photo", ["chelsea.png", "coffee.png", "astronaut.png"])
def test_real_isnet_int8_agrees_with_isnet(photo, isnet_engine_pair):
    float_engine, int8_engine = isnet_engine_pair
    pixels = cli.pixels_of(cli.load_image(FIXTURES / photo))
    expected, got = float_engine.mask(pixels) > 127, int8_engine.mask(pixels) > 127
    assert expected.mean() > 0.05                         # there is a subject to agree on
    assert iou(got, expected) >= 0.97


@pytest.fixture(scope="module")
def isnet_engine_pair(isnet_path):
    need(model_fetch.is_installed("isnet-int8"),
         "isnet-int8 is not derived: python -m model_fetch fetch isnet-int8 (minutes; tests/run.py does it)")
    return engine.load("isnet", providers="cpu"), engine.load("isnet-int8", providers="cpu")


def test_the_command_lists_verifies_and_removes_a_derived_model(tmp_path):
    store = store_with_tiny_models(tmp_path)
    command = [sys.executable, "-m", "model_fetch", "--registry", str(tmp_path / "registry.json"),
               "--cache-dir", str(store.cache_dir)]

    def run_command(*words):
        return subprocess.run(command + list(words), capture_output=True, text=True, timeout=300)

    listed = run_command("list").stdout
    assert [line.split()[:7] for line in listed.splitlines() if line.startswith("   tiny-int8")] == [
        ["tiny-int8", "?", "MIT", "derived", "from", "tiny", "-"]]
    assert "made on this machine from another (tiny)" in listed and "for int8 models: " in listed
    fetched = run_command("fetch", "tiny-int8")
    assert fetched.returncode == 0, fetched.stderr
    assert "tiny-int8: calibrating on chelsea.jpg" in fetched.stderr
    assert fetched.stdout.strip() == "tiny-int8: %s" % (store.cache_dir / "tiny-int8.onnx")
    assert [line.split()[-1] for line in run_command("list").stdout.splitlines()
            if line.startswith("   tiny-int8")] == ["yes"]
    assert run_command("verify", "tiny-int8").stdout.strip() == "tiny-int8: ok"
    assert run_command("remove", "tiny-int8").stdout.strip() == "tiny-int8: removed"
    assert not store.is_installed("tiny-int8") and store.is_installed("tiny")
