"""The plug-in's helper policy, outside GIMP: a HelperSession on a real helper (the serve loop
with a tiny model), started on first use, started again after a death, refused when it is not
the installed version."""

import json
import os
import signal
import sys

import pytest

from onnx_models import random_image, spec, split_model
from remove_background.helper import engine, version
from remove_background.wire import client, protocol
from remove_background.wire.client import HelperError, HelperSession

TINY = spec(input_size=[16, 12], divide_by=255, mean=[0, 0, 0], std=[1, 1, 1])


@pytest.fixture(scope="module")
def tiny_model(model_dir):
    return split_model(model_dir / "split_session.onnx", 16, 12)


def plugin_dir(tmp_path, **config):
    """A plug-in folder whose helper.json names this Python (which has the helper installed)."""
    (tmp_path / "helper.json").write_text(json.dumps(dict({"python": sys.executable, "version": version()},
                                                          **config)))
    return tmp_path


def session(folder, tiny_model):
    return HelperSession(folder, "tiny", threads=1, file=str(tiny_model), preprocess=TINY)


def engine_mask(image, model, depth=1):
    """The mask the engine itself makes of ``image`` with the tiny model (as the helper must)."""
    mask = engine.Engine(model, TINY, threads=1).mask(image, depth)
    return mask.astype("<u%d" % depth).tobytes()


def test_started_once_then_again_after_a_death(tmp_path, tiny_model):
    image = random_image(1, 12, 16, 3)
    with session(plugin_dir(tmp_path), tiny_model) as helper:
        assert helper.client is None                # nothing runs before the first mask
        stages = []
        mask = helper.mask(16, 12, 3, image.tobytes(), 1, lambda stage, _fraction: stages.append(stage))
        assert mask == engine_mask(image, tiny_model)
        assert stages[0] == "loading" and stages[-1] == "postprocess"
        first = helper.client.pid
        stages.clear()
        assert helper.mask(16, 12, 3, image.tobytes(), 1, lambda stage, _fraction: stages.append(stage)) == \
            engine_mask(image, tiny_model)
        assert helper.client.pid == first and "loading" not in stages      # the same helper, no new load

        os.kill(first, signal.SIGKILL)
        with pytest.raises(HelperError) as caught:
            helper.mask(16, 12, 3, image.tobytes(), 1, None)
        assert caught.value.kind == client.HELPER_DIED and not caught.value.lasting
        assert helper.client is None
        other = random_image(2, 12, 16, 3)
        assert helper.mask(16, 12, 3, other.tobytes(), 1, None) == engine_mask(other, tiny_model)
        assert helper.client.pid != first
        process = helper.client._process
    assert helper.client is None and process.poll() is not None            # closed at the end


def strips_of(data, rows, row_bytes, read=None):
    """protocol.Pieces of ``data`` in strips of ``rows`` rows, as the plug-in reads a layer;
    ``read`` (a list) records each strip as it is read."""
    def strips():
        for start in range(0, len(data), rows * row_bytes):
            if read is not None:
                read.append(start)
            yield data[start:start + rows * row_bytes]
    return protocol.Pieces(len(data), strips())


def test_pixels_sent_strip_by_strip_as_they_are_read(tmp_path, tiny_model):
    image = random_image(4, 12, 16, 3)
    data = image.tobytes()
    with session(plugin_dir(tmp_path), tiny_model) as helper:
        read = []
        sent = strips_of(data, 5, 16 * 3, read)
        assert read == []                            # nothing read before it is sent
        assert helper.mask(16, 12, 3, sent, 1, None) == engine_mask(image, tiny_model)
        assert read == [0, 5 * 48, 10 * 48]          # each strip read once
        assert sent.joined() == data and len(read) == 3          # kept: sent again or joined unread
        assert helper.mask(16, 12, 3, sent, 1, None) == engine_mask(image, tiny_model)
        mask, _colours = helper.refine(16, 12, 3, sent, engine_mask(image, tiny_model), 1, snap=True)
        assert len(mask) == 16 * 12

        # Strips adding up to less than they said: the request is not sent as if whole.
        with pytest.raises(HelperError) as caught:
            helper.mask(16, 12, 3, protocol.Pieces(len(data), [data[:100]]), 1, None)
        assert caught.value.kind == client.HELPER_DIED

        # GIMP failing to give a strip: its error goes on, and the helper that got half a
        # request goes with it; the next mask has a helper again.
        def failing():
            yield data[:48]
            raise RuntimeError("GIMP could not read the layer")
        with pytest.raises(RuntimeError, match="could not read"):
            helper.mask(16, 12, 3, protocol.Pieces(len(data), failing()), 1, None)
        assert helper.mask(16, 12, 3, data, 1, None) == engine_mask(image, tiny_model)


def test_an_error_reply_keeps_the_helper(tmp_path, tiny_model):
    with session(plugin_dir(tmp_path), tiny_model) as helper:
        image = random_image(3, 12, 16, 3)
        assert helper.mask(16, 12, 3, image.tobytes(), 1, None) == engine_mask(image, tiny_model)
        pid = helper.client.pid
        with pytest.raises(HelperError) as caught:
            helper.mask(16, 12, 3, b"short", 1, None)
        assert caught.value.kind == "bad_size" and not caught.value.lasting
        assert helper.mask(16, 12, 3, image.tobytes(), 2, None) == engine_mask(image, tiny_model, 2)
        assert helper.client.pid == pid


def test_a_helper_of_another_version_says_run_install_again(tmp_path, tiny_model):
    with session(plugin_dir(tmp_path, version="0.0.0-other"), tiny_model) as helper:
        with pytest.raises(HelperError) as caught:
            helper.mask(16, 12, 3, random_image(4, 12, 16, 3).tobytes(), 1, None)
        assert helper.client is None                # the wrong helper does not stay
    error = caught.value
    assert error.kind == client.WRONG_VERSION and error.lasting
    assert "is version %s, but helper.json names 0.0.0-other" % version() in str(error)
    assert "Run `python3 install.py` again" in str(error)


def test_a_helper_speaking_another_protocol_says_run_install_again(tmp_path, tiny_model, monkeypatch):
    # This side is the plug-in of a newer protocol; the helper still speaks the current one.
    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", protocol.PROTOCOL_VERSION + 1)
    with session(plugin_dir(tmp_path), tiny_model) as helper:
        with pytest.raises(HelperError) as caught:
            helper.mask(16, 12, 3, random_image(5, 12, 16, 3).tobytes(), 1, None)
    assert caught.value.kind == client.WRONG_VERSION and caught.value.lasting
    assert "speaks protocol %d, the plug-in %d" % (protocol.PROTOCOL_VERSION - 1, protocol.PROTOCOL_VERSION) \
        in str(caught.value)
    assert "Run `python3 install.py` again" in str(caught.value)


def test_no_version_in_helper_json_checks_the_protocol_only(tmp_path, tiny_model):
    folder = tmp_path
    (folder / "helper.json").write_text(json.dumps({"python": sys.executable}))
    with session(folder, tiny_model) as helper:
        image = random_image(6, 12, 16, 1)
        assert helper.mask(16, 12, 1, image.tobytes(), 1, None) == engine_mask(image, tiny_model)


def test_a_model_that_is_not_fetched_ends_the_run(tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    folder = plugin_dir(tmp_path, env={"REMOVE_BACKGROUND_MODELS": str(empty)})
    with HelperSession(folder, "isnet") as helper:
        with pytest.raises(HelperError) as caught:
            helper.mask(16, 12, 3, random_image(7, 12, 16, 3).tobytes(), 1, None)
        assert helper.client is None
    assert caught.value.kind == "model_missing" and caught.value.lasting
    assert "model_fetch fetch isnet" in str(caught.value)


def test_not_installed_ends_the_run(tmp_path):
    with HelperSession(tmp_path, "isnet") as helper:
        with pytest.raises(HelperError) as caught:
            helper.mask(1, 1, 1, b"\0", 1, None)
    assert caught.value.kind == client.NOT_INSTALLED and caught.value.lasting


def test_the_message_carries_the_helpers_last_words():
    assert str(HelperError(client.HELPER_DIED, "It stopped.", "line 1\nline 2")) == \
        "It stopped.\n\nThe helper's last messages:\nline 1\nline 2"
    assert str(HelperError("bad_size", "Too short.")) == "Too short."
    assert set(protocol.MODEL_UNUSABLE) <= set(protocol.ERROR_KINDS)
