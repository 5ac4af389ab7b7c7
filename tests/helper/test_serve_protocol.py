"""The helper in serve mode, driven over real pipes: by the client, and by hand with bad frames."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from onnx_models import random_image, spec, split_model
from remove_background.helper import engine
from remove_background.wire import protocol
from remove_background.wire.client import HELPER_DIED, HelperClient, HelperError

SERVE = [sys.executable, "-m", "remove_background.helper.serve"]
TINY = spec(input_size=[16, 12], divide_by=255, mean=[0, 0, 0], std=[1, 1, 1])


@pytest.fixture(scope="module")
def tiny_model(model_dir):
    return split_model(model_dir / "split_serve.onnx", 16, 12)


def test_several_images_in_one_session(tiny_model):
    local = engine.Engine(tiny_model, TINY, threads=1)
    with HelperClient(SERVE) as helper:
        hello = helper.hello()
        assert hello["protocol"] == protocol.PROTOCOL_VERSION
        assert "CPUExecutionProvider" in hello["providers"]
        loaded = helper.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
        assert loaded["provider"] == "CPUExecutionProvider" and loaded["threads"] == 1
        pid = helper.pid
        cases = [(16, 12, 3, 1), (16, 12, 4, 2), (451, 300, 3, 1), (7, 5, 1, 1), (33, 65, 2, 2),
                 (1, 1, 4, 1)]
        for number, (width, height, channels, depth) in enumerate(cases):
            image = random_image(number, height, width, channels)
            stages = []
            # Any buffer will do: bytes, or (every other time) the numpy array itself.
            pixels = image if number % 2 else image.tobytes()
            # Refined (the default) every other time, as the engine does it.
            refine = number % 2 == 1
            mask = helper.process(width, height, channels, pixels, mask_depth=depth,
                                  on_progress=lambda stage, fraction: stages.append(stage), refine=refine)
            dtype = np.uint8 if depth == 1 else np.dtype("<u2")
            got = np.frombuffer(mask, dtype).reshape(height, width)
            assert np.array_equal(got, local.mask(image, depth, refine=refine)), (width, height, channels, depth)
            if (width, height) == (16, 12) and not refine:
                # At the model's own size the mask is exactly the first channel.
                expected = image[:, :, 0].astype(np.uint32) * (1 if depth == 1 else 257)
                assert np.array_equal(got, expected)
            order = [protocol.STAGES.index(stage) for stage in stages]
            assert order == sorted(order) and stages[0] == "received" and stages[-1] == "postprocess"
        # The same load again is free: the model stays loaded for the whole session.
        assert helper.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)["seconds"] == 0
        assert helper.pid == pid


def test_error_replies_keep_the_session(tiny_model):
    with HelperClient(SERVE) as helper:
        with pytest.raises(HelperError) as caught:
            helper.process(2, 2, 3, bytes(12))
        assert caught.value.kind == "no_model"
        helper.load("tiny", file=str(tiny_model), preprocess=TINY)
        with pytest.raises(HelperError) as caught:
            helper.process(2, 2, 5, bytes(20))
        assert caught.value.kind == "bad_request" and "channel" in caught.value.message
        with pytest.raises(HelperError) as caught:
            helper.process(2, 2, 3, bytes(11))
        assert caught.value.kind == "bad_size"
        with pytest.raises(HelperError) as caught:
            helper.load("bad", file=str(tiny_model) + ".missing", preprocess=TINY)
        assert caught.value.kind == "model_invalid" and "bad" in caught.value.message
        # The earlier failed load dropped the old model; a new one works.
        helper.load("tiny", file=str(tiny_model), preprocess=TINY)
        assert len(helper.process(16, 12, 3, bytes(16 * 12 * 3))) == 16 * 12


def start_raw():
    return subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def send(process, raw):
    process.stdin.write(raw)
    process.stdin.flush()
    header, payload = protocol.read_message(process.stdout)
    return header


def header_line(header):
    return json.dumps(header).encode() + b"\n"


def test_malformed_frames_are_answered(tiny_model):
    process = start_raw()
    try:
        assert send(process, b"this is not json\n")["error"] == "bad_header"
        assert send(process, b"[1, 2, 3]\n")["error"] == "bad_header"
        assert send(process, b'{"op": "hello", "size": -4}\n')["error"] == "bad_header"
        too_long = b'{"op": "hello", "pad": "' + b"x" * protocol.MAX_HEADER_BYTES + b'"}\n'
        assert send(process, too_long)["error"] == "bad_header"
        assert send(process, header_line({"op": "dance"}))["error"] == "bad_request"
        assert send(process, header_line({"op": "load"}))["error"] == "bad_request"
        process_header = {"op": "process", "width": 2, "height": 2, "channels": 3, "size": 5}
        assert send(process, header_line(process_header) + bytes(5))["error"] == "bad_size"
        process_header.update(width=-2, size=0)
        assert send(process, header_line(process_header))["error"] == "bad_request"
        process_header.update(width=2, height="2", size=12)
        assert send(process, header_line(process_header) + bytes(12))["error"] == "bad_request"
        process_header.update(height=2, mask_depth=3)
        assert send(process, header_line(process_header) + bytes(12))["error"] == "bad_request"
        # After all that, still in step and serving.
        load = {"op": "load", "model": "tiny", "file": str(tiny_model), "preprocess": TINY}
        assert send(process, header_line(load))["op"] == "loaded"
        good = {"op": "process", "width": 2, "height": 2, "channels": 3, "size": 12}
        process.stdin.write(header_line(good) + bytes([10] * 12))
        process.stdin.flush()
        while True:
            header, payload = protocol.read_message(process.stdout)
            if header["op"] != "progress":
                break
        assert header["op"] == "mask" and bytes(payload) == bytes([10] * 4)
        process.stdin.close()
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_frames_that_crashed_the_helper_are_answered(tiny_model, tmp_path):
    import threading

    process = start_raw()
    # A helper that swallows the stream waiting for a payload would leave send() waiting for ever.
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert send(process, header_line({"op": [1]}))["error"] == "bad_request"
        assert send(process, header_line({"op": {"a": 1}}))["error"] == "bad_request"
        for size in (9223372036854775807, 10 ** 18, 2 ** 64, 10 ** 13):     # 10 TB: more than this memory
            assert send(process, header_line({"op": "hello", "size": size}))["error"] == "bad_size"
        assert send(process, header_line({"op": "load", "model": "tiny", "threads": 5000}))["error"] == "bad_request"
        fifo = tmp_path / "model.fifo"
        os.mkfifo(fifo)
        reply = send(process, header_line({"op": "load", "model": "tiny", "file": str(fifo), "preprocess": TINY}))
        assert reply["error"] == "model_invalid" and "not a regular file" in reply["message"]
        bad_mean = dict(TINY, mean="abc")
        reply = send(process, header_line({"op": "load", "model": "tiny", "file": str(tiny_model),
                                           "preprocess": bad_mean}))
        assert reply["error"] == "model_invalid" and "mean" in reply["message"]
        # Still serving, and a load with other preprocessing is another engine, checked anew.
        load = {"op": "load", "model": "tiny", "file": str(tiny_model), "preprocess": TINY}
        assert send(process, header_line(load))["op"] == "loaded"
        load["preprocess"] = dict(TINY, output_index=7)
        reply = send(process, header_line(load))
        assert reply["error"] == "model_invalid" and "no output 7" in reply["message"]
        process.stdin.close()
        assert process.wait(timeout=20) == 0
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_unknown_model_is_an_error_reply():
    import model_fetch  # noqa: F401 (the registry is needed to tell unknown names)

    with HelperClient(SERVE) as helper:
        with pytest.raises(HelperError) as caught:
            helper.load("no-such-model")
        assert caught.value.kind == "unknown_model"
        assert helper.hello()["op"] == "hello"


def test_models_is_cheap_and_lists_the_registry():
    with HelperClient(SERVE) as helper:
        listing = helper.models()
        names = [entry["name"] for entry in listing["models"]]
        assert "isnet" in names and all(isinstance(e["installed"], bool) for e in listing["models"])
        # Answering it imported neither onnxruntime nor numpy.
        code = ("import sys, io; from remove_background.helper import serve;"
                "out = io.BytesIO(); serve.Server(io.BytesIO(b'{\"op\":\"models\"}\\n'), out).run();"
                "print(sorted(m for m in ('onnxruntime', 'numpy') if m in sys.modules))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


def test_exits_at_end_of_input():
    process = start_raw()
    process.stdin.close()
    assert process.wait(timeout=20) == 0
    # Also when the input ends in the middle of a payload.
    process = start_raw()
    process.stdin.write(header_line({"op": "process", "width": 10, "height": 10, "channels": 3,
                                     "size": 300}) + bytes(50))
    process.stdin.close()
    assert process.wait(timeout=20) == 0


@pytest.mark.skipif(os.name == "nt", reason="Windows does not re-parent orphans; end of input is the signal there")
def test_exits_when_its_parent_is_killed(tmp_path):
    """As when GIMP kills the plug-in on Cancel, even while the helper's input stays open."""
    read_end, write_end = os.pipe()          # this test keeps the write end: no end of input
    pid_file = tmp_path / "helper.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "helper = subprocess.Popen([sys.executable, '-m', 'remove_background.helper.serve'], stdin=%d)\n"
         "open(%r, 'w').write(str(helper.pid))\n"
         "time.sleep(600)\n" % (read_end, str(pid_file))],
        pass_fds=(read_end,))
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        helper_pid = int(pid_file.read_text())
        time.sleep(1)                        # the helper is up and waiting for a request
        assert os.waitpid(parent.pid, os.WNOHANG) == (0, 0)
        os.kill(helper_pid, 0)               # still running
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(helper_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(helper_pid, signal.SIGKILL)
            pytest.fail("the helper outlived its parent by 5 s")
    finally:
        parent.kill()
        os.close(read_end)
        os.close(write_end)


def test_helper_killed_mid_request_is_detected(tiny_model):
    helper = HelperClient(SERVE)
    helper.start()
    helper.load("tiny", file=str(tiny_model), preprocess=TINY)

    def kill_it(stage, fraction):
        if stage == "received":
            os.kill(helper.pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)

    started = time.monotonic()
    with pytest.raises(HelperError) as caught:
        helper.process(2000, 1500, 3, bytes(2000 * 1500 * 3), on_progress=kill_it)
    assert caught.value.kind == HELPER_DIED
    assert time.monotonic() - started < 30
    assert not helper.running
    # And a request to a helper that is already gone fails the same way, quickly.
    with pytest.raises(HelperError) as caught:
        helper.hello()
    helper.close()


def test_helper_dying_at_start_reports_its_stderr():
    code = "import sys; sys.stderr.write('first\\nboom: cannot import numpy\\n'); sys.exit(3)"
    with HelperClient([sys.executable, "-c", code]) as helper:
        with pytest.raises(HelperError) as caught:
            helper.hello()
    assert caught.value.kind == HELPER_DIED
    assert "boom: cannot import numpy" in caught.value.stderr_tail
    assert "exit status 3" in caught.value.message
    assert "boom" in str(caught.value)


def test_writing_to_a_dead_helper_is_detected():
    with HelperClient([sys.executable, "-c", "pass"]) as helper:
        time.sleep(0.5)
        with pytest.raises(HelperError) as caught:
            helper.process(3000, 3000, 4, bytes(3000 * 3000 * 4))
        assert caught.value.kind == HELPER_DIED


def test_raising_from_progress_cancels(tiny_model):
    class Cancelled(Exception):
        pass

    def cancel(stage, fraction):
        raise Cancelled()

    helper = HelperClient(SERVE)
    helper.load("tiny", file=str(tiny_model), preprocess=TINY)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        helper.process(16, 12, 3, bytes(16 * 12 * 3), on_progress=cancel)
    assert time.monotonic() - started < 5 and not helper.running
    with pytest.raises(HelperError) as caught:
        helper.hello()
    assert caught.value.kind == HELPER_DIED


def test_a_photo_sent_in_strips_gives_the_mask_of_the_whole_photo(tiny_model):
    # 3300 x 2100: many of the helper's reads, and a guide made of every other row and column.
    width, height, channels = 3300, 2100, 3
    image = random_image(11, height, width, channels)
    local = engine.Engine(tiny_model, TINY, threads=2)
    strips = protocol.Pieces(image.nbytes, (image[top:top + 37].tobytes() for top in range(0, height, 37)))
    with HelperClient(SERVE) as helper:
        helper.load("tiny", threads=2, file=str(tiny_model), preprocess=TINY)
        for refine in (True, False):
            mask = helper.process(width, height, channels, strips, refine=refine)
            assert np.array_equal(np.frombuffer(mask, np.uint8).reshape(height, width),
                                  local.mask(image, refine=refine)), refine
