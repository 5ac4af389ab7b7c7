"""Loading models (and refusing unusable ones), providers, threads, and the mask upsampling."""

import numpy as np
import pytest

from onnx_models import spec, split_model
from remove_background.helper import engine, postprocess


def test_corrupt_file_names_model_and_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07 this is not a protobuf" * 100)
    with pytest.raises(engine.ModelLoadError) as caught:
        engine.Engine(path, spec(), name="isnet")
    message = str(caught.value)
    assert "isnet" in message and str(path) in message
    assert "Traceback" not in message and "\n" not in message


def test_truncated_model_is_refused(model_dir, tmp_path):
    whole = split_model(model_dir / "split_trunc.onnx", 16, 12).read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(engine.ModelLoadError, match="half.onnx"):
        engine.Engine(path, spec(input_size=[16, 12]), name="tiny")


def test_wrong_input_shape_is_refused(model_dir):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    with pytest.raises(engine.ModelLoadError, match=r"input has shape \[1, 3, 12, 16\]"):
        engine.Engine(model, spec(), name="tiny")            # ISNet's 1024 x 1024


def test_missing_output_and_bad_description_are_refused(model_dir):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    with pytest.raises(engine.ModelLoadError, match="no output 4"):
        engine.Engine(model, spec(input_size=[16, 12], output_index=4))
    with pytest.raises(engine.ModelLoadError, match="unknown resize"):
        engine.Engine(model, spec(input_size=[16, 12], resize="magic"))


def test_threads_and_provider(model_dir, capfd):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    everything = engine.Engine(model, spec(input_size=[16, 12]))
    assert everything.threads == engine.cpu_count()
    assert engine.Engine(model, spec(input_size=[16, 12]), threads=1).threads == 1
    assert everything.provider == everything.session.get_providers()[0]
    if everything.provider == engine.CPU_PROVIDER:
        # Running on the CPU is always said, never silent.
        assert "on the CPU" in capfd.readouterr().err


def test_threads_spin_only_one_a_core(model_dir):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)

    def spinning(threads):
        options = engine.Engine(model, spec(input_size=[16, 12]), threads=threads).session_options()
        return (options.get_session_config_entry("session.intra_op.allow_spinning"),
                options.get_session_config_entry("session.force_spinning_stop"))

    # Spinning between nodes, stopped when a run ends; never with more threads than cores.
    assert spinning(0) == spinning(1) == ("1", "1")
    assert spinning(engine.cpu_count() + 1) == ("0", "1")


def test_provider_preference():
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert engine.choose_providers(available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert engine.choose_providers(["CoreMLExecutionProvider", "CPUExecutionProvider"]) == [
        "CoreMLExecutionProvider", "CPUExecutionProvider"]
    assert engine.choose_providers(available, requested="cpu") == ["CPUExecutionProvider"]


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_unavailable_provider_falls_back_to_cpu(model_dir, capfd):
    model = split_model(model_dir / "split_16x12.onnx", 16, 12)
    runner = engine.Engine(model, spec(input_size=[16, 12]), providers="NoSuchExecutionProvider")
    assert runner.provider == engine.CPU_PROVIDER
    assert "CPU" in capfd.readouterr().err


def test_bad_pixels_are_refused(model_dir):
    runner = engine.Engine(split_model(model_dir / "split_16x12.onnx", 16, 12), spec(input_size=[16, 12]))
    with pytest.raises(ValueError):
        runner.mask(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError):
        runner.mask(np.zeros((4, 4, 3), np.float32))


def step_mask():
    mask = np.zeros((32, 32), np.float32)
    mask[:, 16:] = 1.0
    return mask


def test_upsampling_has_no_ringing_or_halo():
    out = postprocess.upsample(step_mask(), 320, 200)
    assert out.dtype == np.uint8 and out.shape == (200, 320)
    row = out[100].astype(int)
    assert np.all(np.diff(row) >= 0)                     # monotonic: no overshoot, no halo
    assert row[:140].max() == 0 and row[180:].min() == 255
    assert 0 < row[160] < 255                            # a soft, not a blocky, edge


def test_upsampling_in_bands_equals_one_pass(monkeypatch):
    mask = np.random.default_rng(1).random((37, 53), dtype=np.float32)
    whole = postprocess.upsample(mask, 531, 377, depth=2)
    monkeypatch.setattr(postprocess, "BAND_PIXELS", 531 * 7)     # 54 bands of 7 rows
    fractions = []
    banded = postprocess.upsample(mask, 531, 377, depth=2, progress=fractions.append)
    assert len(fractions) == 54 and fractions[-1] == 1.0
    # Pillow computes each band's filter from float box edges: at most 1 / 65535 apart.
    assert np.abs(banded.astype(int) - whole.astype(int)).max() <= 1
    fractions.clear()
    threaded = postprocess.upsample(mask, 531, 377, depth=2, progress=fractions.append, workers=3)
    assert np.abs(threaded.astype(int) - whole.astype(int)).max() <= 1
    assert fractions == sorted(fractions) and fractions[-1] == 1.0   # reported in order, to the end


def test_shrinking_and_sixteen_bit_values():
    mask = np.full((64, 64), 0.5, np.float32)
    assert np.all(postprocess.upsample(mask, 3, 5, depth=2) == 32768)
    assert np.all(postprocess.upsample(mask, 1, 1) == 128)
    # 1 x 1 images work too (and a single pixel mask becomes a constant).
    assert np.all(postprocess.upsample(np.full((1, 1), 1.0, np.float32), 7, 3) == 255)


def test_one_pixel_image(model_dir):
    runner = engine.Engine(split_model(model_dir / "split_16x12.onnx", 16, 12),
                           spec(input_size=[16, 12], divide_by=255, mean=[0, 0, 0], std=[1, 1, 1]))
    for resize in ("bilinear-point", "lanczos"):
        runner.preprocess["resize"] = resize
        assert runner.mask(np.full((1, 1, 3), 200, np.uint8)).tolist() == [[200]]
