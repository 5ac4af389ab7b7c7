"""onnxruntime's optimised graph, saved at a model's first load and opened at the next."""

import numpy as np
import pytest

from model_fetch.cache import stamp_path, write_stamp
from onnx_models import FIXTURES, isnet_path, model_dir, spec, split_model  # noqa: F401 (fixtures)
from remove_background import cli, engine, optimized

IDENTITY = "sha256:" + "ab" * 32
SIZE = [16, 12]


@pytest.fixture
def tiny(model_dir):  # noqa: F811
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
    # Another model (another digest) has its own graph, and replaces the first in this folder.
    other = load(tiny, folder, identity="sha256:" + "cd" * 32)
    assert other.opened == str(tiny) and saved.name not in saved_files(folder)


def test_a_graph_changed_since_it_was_saved_is_not_used(tiny, tmp_path):
    folder = tmp_path / "derived"
    load(tiny, folder)
    saved = optimized.saved_graph(folder, IDENTITY)
    whole = saved.read_bytes()
    saved.write_bytes(whole[: len(whole) // 2])                 # cut short: the stamp no longer matches
    again = load(tiny, folder)
    assert again.opened == str(tiny)                            # the model itself, and saved anew
    assert saved.read_bytes() != whole[: len(whole) // 2] and load(tiny, folder).opened == str(saved)


def test_a_damaged_graph_that_still_looks_stamped_is_made_again(tiny, tmp_path, capfd):
    folder = tmp_path / "derived"
    load(tiny, folder)
    saved = optimized.saved_graph(folder, IDENTITY)
    saved.write_bytes(b"\x08\x07 not a graph" * 10)
    write_stamp(saved, optimized.STAMP_KIND, optimized.key(IDENTITY))
    again = load(tiny, folder)
    assert again.opened == str(tiny)
    assert "cannot be used" in capfd.readouterr().err
    remade = load(tiny, folder)
    assert remade.opened == str(saved) and np.array_equal(run(again), run(remade))


def test_leftovers_are_cleared_when_a_graph_is_saved(tiny, tmp_path):
    folder = tmp_path / "derived"
    folder.mkdir()
    (folder / "old-onnxruntime.onnx").write_bytes(b"x" * 100)
    (folder / "killed.onnx.1234.part").write_bytes(b"x" * 100)
    load(tiny, folder)
    saved = optimized.saved_graph(folder, IDENTITY)
    assert saved_files(folder) == [saved.name, stamp_path(saved).name]


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


def test_the_real_model_gives_the_same_mask_from_its_saved_graph(isnet_path, tmp_path):  # noqa: F811
    import model_fetch

    isnet = model_fetch.get("isnet")
    identity = ":".join(isnet.pin)
    pixels = cli.pixels_of(cli.load_image(FIXTURES / "chelsea.png"))
    engine.Engine(isnet_path, isnet.preprocess, optimized_dir=tmp_path, identity=identity)
    saved = engine.Engine(isnet_path, isnet.preprocess, optimized_dir=tmp_path, identity=identity)
    assert saved.opened == str(optimized.saved_graph(tmp_path, identity))
    plain = engine.Engine(isnet_path, isnet.preprocess)
    assert np.array_equal(saved.mask(pixels, depth=2), plain.mask(pixels, depth=2))
