"""onnxruntime's optimised graph, saved at a model's first load and opened at the next."""

import os
import time

import numpy as np
import onnxruntime
import pytest

from model_fetch.cache import hash_file, stamp_path, write_stamp
from needs import FIXTURES
from onnx_models import spec, split_model
from remove_background.command import cli
from remove_background.helper import engine, optimized

IDENTITY = "sha256:" + "ab" * 32
SIZE = [16, 12]


@pytest.fixture
def tiny(model_dir):
    return split_model(model_dir / "split_16x12.onnx", *SIZE)


def load(model, folder, identity=IDENTITY, **options):
    return engine.Engine(model, spec(input_size=SIZE), optimized_dir=folder, identity=identity, **options)


def run(runner):
    return runner.infer(np.random.default_rng(3).standard_normal((1, 3, 12, 16)).astype(np.float32))


def saved_files(folder):
    return sorted(path.name for path in folder.iterdir())


def test_first_load_saves_the_graph_and_the_next_opens_it(tiny, tmp_path):
    folder = tmp_path / "derived"
    first = load(tiny, folder)
    assert first.opened == str(tiny)
    saved = optimized.saved_graph(folder, IDENTITY)
    assert saved_files(folder) == [saved.name, stamp_path(saved).name]
    second = load(tiny, folder)
    assert second.opened == str(saved)
    assert np.array_equal(run(second), run(engine.Engine(tiny, spec(input_size=SIZE))))
    # Another digest has its own graph; the first one stays (two setups may share a cache).
    other = load(tiny, folder, identity="sha256:" + "cd" * 32)
    assert other.opened == str(tiny) and saved.name in saved_files(folder)


def test_a_graph_made_on_another_cpu_is_not_used(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "derived"
    load(tiny, folder)
    here = optimized.saved_graph(folder, IDENTITY)
    monkeypatch.setattr(optimized, "cpu_description", lambda: "another CPU\nflags: sse2")
    elsewhere = load(tiny, folder)
    assert elsewhere.opened == str(tiny)                      # made anew, under its own key
    assert optimized.saved_graph(folder, IDENTITY) != here
    assert load(tiny, folder).opened == str(optimized.saved_graph(folder, IDENTITY))
    monkeypatch.undo()
    assert optimized.numpy_cpu_features()                     # what numpy found at run time ...
    assert ",".join(optimized.numpy_cpu_features()) in optimized.cpu_description()   # ... is in the key


def test_a_graph_changed_since_it_was_saved_is_not_used(tiny, tmp_path):
    folder = tmp_path / "derived"
    load(tiny, folder)
    saved = optimized.saved_graph(folder, IDENTITY)
    whole = saved.read_bytes()
    saved.write_bytes(whole[: len(whole) // 2])                 # cut short: the stamp no longer matches
    again = load(tiny, folder)
    assert again.opened == str(tiny)                            # the model itself, and saved anew
    assert saved.read_bytes() != whole[: len(whole) // 2] and load(tiny, folder).opened == str(saved)


def test_a_damaged_graph_that_still_looks_stamped_is_dropped_for_good(tiny, tmp_path, capfd):
    folder = tmp_path / "derived"
    load(tiny, folder)
    saved = optimized.saved_graph(folder, IDENTITY)
    saved.write_bytes(b"\x08\x07 not a graph" * 10)
    write_stamp(saved, optimized.stamp(IDENTITY), ("sha256", hash_file(saved, "sha256")))
    again = load(tiny, folder)
    assert again.opened == str(tiny) and not saved.exists()
    assert "cannot be used" in capfd.readouterr().err
    later = load(tiny, folder)                  # not made again at every start
    assert later.opened == str(tiny) and not saved.exists()
    assert np.array_equal(run(again), run(later))


def test_old_graphs_and_abandoned_parts_are_cleared_when_a_graph_is_saved(tiny, tmp_path):
    folder = tmp_path / "derived"
    folder.mkdir()
    for age, name in enumerate(["newer.onnx", "older.onnx", "oldest.onnx"], 1):
        (folder / name).write_bytes(b"x" * 100)
        os.utime(folder / name, (time.time() - age * 1000,) * 2)
    (folder / "writing.onnx.1234.part").write_bytes(b"x")         # another helper, now
    (folder / "killed.onnx.99.part").write_bytes(b"x")
    os.utime(folder / "killed.onnx.99.part", (time.time() - 7200,) * 2)
    load(tiny, folder)
    saved = optimized.saved_graph(folder, IDENTITY)
    assert saved_files(folder) == sorted([saved.name, stamp_path(saved).name, "newer.onnx", "older.onnx",
                                          "writing.onnx.1234.part"])


def test_a_graph_that_cannot_be_saved_is_not_tried_again(tiny, tmp_path, monkeypatch):
    opened = onnxruntime.InferenceSession
    attempts = []

    def refusing_to_save(path, sess_options=None, **kwargs):
        if sess_options is not None and sess_options.optimized_model_filepath:
            attempts.append(path)
            raise RuntimeError("protobuf: the graph is over 2 GB")
        return opened(path, sess_options=sess_options, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", refusing_to_save)
    folder = tmp_path / "derived"
    assert load(tiny, folder).opened == str(tiny)
    assert load(tiny, folder).opened == str(tiny)
    assert len(attempts) == 1 and np.isfinite(run(load(tiny, folder))).all()


def test_an_unwritable_folder_only_costs_the_saving(tiny, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    runner = load(tiny, blocker / "derived")                    # cannot be created
    assert runner.opened == str(tiny) and np.isfinite(run(runner)).all()


@pytest.mark.filterwarnings("ignore:Specified provider")         # onnxruntime's, about CUDA
def test_a_gpu_request_does_not_use_the_saved_graph(tiny, tmp_path):
    folder = tmp_path / "derived"
    load(tiny, folder, providers="CUDAExecutionProvider")        # falls back to the CPU here
    assert not folder.exists()


def test_the_real_model_gives_the_same_mask_from_its_saved_graph(isnet_path, tmp_path):
    import model_fetch

    isnet = model_fetch.get("isnet")
    identity = ":".join(isnet.pin)
    pixels = cli.pixels_of(cli.load_image(FIXTURES / "chelsea.png"))
    engine.Engine(isnet_path, isnet.preprocess, optimized_dir=tmp_path, identity=identity)
    saved = engine.Engine(isnet_path, isnet.preprocess, optimized_dir=tmp_path, identity=identity)
    assert saved.opened == str(optimized.saved_graph(tmp_path, identity))
    plain = engine.Engine(isnet_path, isnet.preprocess)
    # The saved graph is made from the fp32 form of isnet's fp16 weights (helper/fp32.py).
    import onnx
    graph = onnx.load(saved.opened).graph
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    got, expected = saved.mask(pixels, depth=2) / 65535, plain.mask(pixels, depth=2) / 65535
    assert np.abs(got - expected).mean() <= 0.001
    assert ((got > 0.5) & (expected > 0.5)).sum() / ((got > 0.5) | (expected > 0.5)).sum() >= 0.999


def test_a_save_that_failed_for_space_is_tried_again_once_there_is_room(tiny, tmp_path, monkeypatch, capfd):
    opened = onnxruntime.InferenceSession
    attempts = []

    def disk_full(path, sess_options=None, **kwargs):
        if sess_options is not None and sess_options.optimized_model_filepath:
            attempts.append(path)
            raise RuntimeError("No space left on device")
        return opened(path, sess_options=sess_options, **kwargs)

    free = {"bytes": 1000}
    real_usage = optimized.shutil.disk_usage
    monkeypatch.setattr(optimized.shutil, "disk_usage",
                        lambda folder: real_usage(folder)._replace(free=free["bytes"]))
    monkeypatch.setattr(onnxruntime, "InferenceSession", disk_full)
    folder = tmp_path / "derived"
    assert load(tiny, folder).opened == str(tiny)
    said = capfd.readouterr().err
    assert "not saved" in said and "No space left on device" in said              # said once, with why
    assert load(tiny, folder).opened == str(tiny) and len(attempts) == 1           # no room yet: not tried
    assert "not saved" not in capfd.readouterr().err
    monkeypatch.setattr(onnxruntime, "InferenceSession", opened)
    free["bytes"] = 1000 + 10 * os.path.getsize(tiny)                              # room again
    assert load(tiny, folder).opened == str(tiny)
    assert load(tiny, folder).opened == str(optimized.saved_graph(folder, IDENTITY))


def test_a_graph_damaged_and_touched_back_is_never_opened(tiny, tmp_path):
    folder = tmp_path / "derived"
    load(tiny, folder)
    saved = optimized.saved_graph(folder, IDENTITY)
    before = saved.stat()
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(saved, "r+b") as f:
        f.write(bytes(data))
    os.utime(saved, ns=(before.st_atime_ns, before.st_mtime_ns))               # touch -r
    again = load(tiny, folder)
    assert again.opened == str(tiny)                            # hashed again, failed, made anew
    assert hash_file(saved, "sha256") != __import__("hashlib").sha256(bytes(data)).hexdigest()


def test_a_link_planted_in_the_folder_is_not_written_through(tiny, tmp_path):
    folder = tmp_path / "derived"
    folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    saved = optimized.saved_graph(folder, IDENTITY)
    for name in ["%s.%d.part" % (saved.name, os.getpid()), saved.name + ".save-failed",
                 stamp_path(saved).name]:
        (folder / name).symlink_to(victim)
    assert load(tiny, folder).opened == str(tiny)
    assert victim.read_bytes() == b"precious"
    assert load(tiny, folder).opened == str(saved)


def test_a_model_that_cannot_load_is_not_taken_for_a_failed_save(tmp_path, capfd):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph" * 100)
    folder = tmp_path / "derived"
    with pytest.raises(engine.ModelLoadError, match="Cannot load model"):
        load(broken, folder)
    assert "not saved" not in capfd.readouterr().err
    assert not list(folder.glob("*.save-failed")) and not list(folder.glob(".saving-*"))
