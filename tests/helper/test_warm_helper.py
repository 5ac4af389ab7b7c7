"""The warm helper (remove_background.helper.warm) over its real Unix socket, started as the
plug-in starts it (client.warm_client): it is reused, keeps its model, goes away by itself,
refuses others, and survives its clients being killed mid-request."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper as onnx_helper

from other_user import AS_NOBODY, NOBODY, python_for_anyone
from onnx_models import random_image, save, spec, split_model
from remove_background.wire import client, protocol, warm
from remove_background.wire.client import HELPER_DIED, HelperClient, HelperError, HelperSession, WarmClient

pytestmark = pytest.mark.skipif(not warm.supported(), reason="no warm helper on %s" % sys.platform)

TINY = spec(input_size=[16, 12], divide_by=255, mean=[0, 0, 0], std=[1, 1, 1])
GONE_WITHIN = 5.0


@pytest.fixture(scope="module")
def tiny_model(model_dir):
    return split_model(model_dir / "split_warm.onnx", 16, 12)


def slow_model(path, width=16, height=12, size=1024, steps=120):
    """Outputs the input's first channel, after ``steps`` products of size x size matrices that
    depend on the input (nothing to fold away at load): seconds of inference on a tiny image."""
    x = onnx_helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    out = onnx_helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, 1, height, width])
    eye = onnx_helper.make_tensor("eye", TensorProto.FLOAT, [size, size],
                                  np.eye(size, dtype=np.float32).reshape(-1).tolist())
    zero = onnx_helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [onnx_helper.make_node("Split", ["input"], ["c0_", "c1", "c2"], axis=1, num_outputs=3),
             onnx_helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             onnx_helper.make_node("Mul", ["eye", "mean"], ["y0"])]
    for step in range(steps):
        nodes.append(onnx_helper.make_node("MatMul", ["y%d" % step, "eye"], ["y%d" % (step + 1)]))
    nodes += [onnx_helper.make_node("ReduceSum", ["y%d" % steps], ["total"], keepdims=0),
              onnx_helper.make_node("Mul", ["total", "zero"], ["nothing"]),
              onnx_helper.make_node("Add", ["c0_", "nothing"], ["c0"])]
    graph = onnx_helper.make_graph(nodes, "slow", [x], [out], initializer=[eye, zero])
    model = onnx_helper.make_model(graph, opset_imports=[onnx_helper.make_opsetid("", 18)])
    model.ir_version = 8
    return save(model, path)


def constant_model(path, width, height, value):
    """Its only output is ``value`` everywhere (computed from the input, so not folded away)."""
    x = onnx_helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    out = onnx_helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, height, width])
    tensors = [onnx_helper.make_tensor(name, TensorProto.FLOAT, [], [number])
               for name, number in (("zero", 0.0), ("value", value))]
    nodes = [onnx_helper.make_node("Split", ["input"], ["c0", "c1", "c2"], axis=1, num_outputs=3),
             onnx_helper.make_node("Mul", ["c0", "zero"], ["nothing"]),
             onnx_helper.make_node("Add", ["nothing", "value"], ["out"])]
    graph = onnx_helper.make_graph(nodes, "constant", [x], [out], initializer=tensors)
    model = onnx_helper.make_model(graph, opset_imports=[onnx_helper.make_opsetid("", 18)])
    model.ir_version = 8
    return save(model, path)


@pytest.fixture(scope="module")
def slow(model_dir):
    return slow_model(model_dir / "slow_warm.onnx")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A plug-in folder whose helper.json names this Python, and a runtime folder of its own."""
    runtime = tempfile.mkdtemp(prefix="rt-", dir="/tmp")    # short: a socket path's limit
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    monkeypatch.delenv(warm.IDLE_VARIABLE, raising=False)
    (tmp_path / "helper.json").write_text(json.dumps({"python": sys.executable, "env": {
        "REMOVE_BACKGROUND_MODELS": str(tmp_path / "models")}}))
    yield tmp_path
    for pid in helpers_under(runtime):
        kill(pid)
    shutil.rmtree(runtime, ignore_errors=True)


def helpers_under(runtime):
    """The warm helpers whose socket is in ``runtime`` (left running by a failed test)."""
    if not os.path.isdir("/proc"):
        return [hello["warm"]["pid"] for _path, hello in warm.running(warm.folder(create=False))]
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                line = handle.read()
        except OSError:
            continue
        if warm.WARM_MODULE.encode() in line and runtime.encode() in line:
            found.append(int(entry))
    return found


def private(plugin_dir):
    return HelperClient.from_config(plugin_dir)


def sock_path(plugin_dir):
    config = json.loads((plugin_dir / "helper.json").read_text())
    return warm.socket_path(warm.key([config["python"]], config["env"]))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a child of ours that has exited is a zombie until reaped
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def wait_gone(pid, within=GONE_WITHIN):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_gone(pid)


def log_text(plugin_dir):
    return open(warm.log_path(sock_path(plugin_dir))).read()


def test_runs_reuse_one_helper_and_model_with_a_private_helpers_masks(plugin_dir, tiny_model):
    image = random_image(3, 300, 451, 4)
    with HelperClient(private(plugin_dir).command) as cold:
        cold.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
        expected = cold.process(451, 300, 4, image)

    first = client.warm_client(private(plugin_dir))
    assert isinstance(first, WarmClient) and first.connection.hello["warm"]["model"] is None
    first.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
    assert first.process(451, 300, 4, image) == expected
    pid = first.pid
    first.close()

    again = client.warm_client(private(plugin_dir))
    assert again.pid == pid
    assert again.connection.hello["warm"]["model"] == "tiny"
    assert again.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)["seconds"] == 0
    assert again.process(451, 300, 4, image) == expected
    # Another thread count is another load (and the only model in memory).
    assert again.load("tiny", threads=2, file=str(tiny_model), preprocess=TINY)["threads"] == 2
    assert again.process(451, 300, 4, image) == expected
    assert again.models()["models"]
    again.close()
    status = dict(warm.running(warm.folder()))[sock_path(plugin_dir)]["warm"]
    assert status["pid"] == pid and status["model"] == "tiny" and status["threads"] == 2
    assert status["idle_timeout"] == warm.DEFAULT_IDLE_SECONDS and status["idle_seconds"] < 60
    # The socket is private: the folder 0700, the socket itself 0600.
    assert os.stat(warm.folder()).st_mode & 0o777 == 0o700
    assert os.stat(sock_path(plugin_dir)).st_mode & 0o077 == 0


def test_goes_after_its_idle_time_and_removes_its_socket(plugin_dir, tiny_model, monkeypatch):
    monkeypatch.setenv(warm.IDLE_VARIABLE, "1.5")
    helper = client.warm_client(private(plugin_dir))
    helper.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
    pid = helper.pid
    time.sleep(2.5)
    assert alive(pid), "went while a run was still connected"
    helper.close()
    assert wait_gone(pid, 1.5 + GONE_WITHIN)
    assert not os.path.exists(sock_path(plugin_dir))
    assert "no run for 1.5 s" in log_text(plugin_dir)


def test_idle_zero_means_no_warm_helper(plugin_dir, monkeypatch):
    monkeypatch.setenv(warm.IDLE_VARIABLE, "0")
    assert client.warm_client(private(plugin_dir)) is None
    monkeypatch.delenv(warm.IDLE_VARIABLE)
    config = json.loads((plugin_dir / "helper.json").read_text())
    (plugin_dir / "helper.json").write_text(json.dumps(dict(config, warm_idle_seconds=0)))
    assert client.warm_client(private(plugin_dir)) is None
    assert not os.path.exists(sock_path(plugin_dir))


def test_goes_when_gimp_goes(plugin_dir):
    gimp = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    env = client.clean_environment()
    env.update(private(plugin_dir).extra_env)
    connection = warm.start([sys.executable], env, sock_path(plugin_dir), 600, gimp.pid)
    pid = connection.pid
    connection.close()
    gimp.kill()
    gimp.wait()
    assert wait_gone(pid), "the warm helper outlived GIMP by %g s" % GONE_WITHIN
    assert "GIMP (pid %d) has exited" % gimp.pid in log_text(plugin_dir)


@pytest.mark.parametrize("change", ["replaced", "removed"])
def test_goes_when_its_model_file_changes(plugin_dir, tiny_model, change):
    model = plugin_dir / "model.onnx"
    shutil.copy(tiny_model, model)
    helper = client.warm_client(private(plugin_dir))
    helper.load("tiny", threads=1, file=str(model), preprocess=TINY)
    pid = helper.pid
    helper.close()
    time.sleep(1.0)
    assert alive(pid)
    if change == "replaced":
        new = plugin_dir / "new.onnx"
        shutil.copy(tiny_model, new)
        os.replace(new, model)
    else:
        model.unlink()
    assert wait_gone(pid)
    assert "has changed or gone" in log_text(plugin_dir)


def test_a_model_changed_during_a_run_is_loaded_again(plugin_dir, tiny_model):
    model = plugin_dir / "model.onnx"
    shutil.copy(tiny_model, model)
    helper = client.warm_client(private(plugin_dir))
    helper.load("tiny", threads=1, file=str(model), preprocess=TINY)
    image = random_image(7, 12, 16, 3)
    # (Unrefined, at the model's own size, the mask is exactly the first channel.)
    assert np.array_equal(np.frombuffer(helper.process(16, 12, 3, image, refine=False), np.uint8)
                          .reshape(12, 16), image[:, :, 0])
    # Now the file is a model whose mask is a constant, while the run still holds the helper.
    new = constant_model(plugin_dir / "new.onnx", 16, 12, 0.5)
    os.replace(new, model)
    helper.load("tiny", threads=1, file=str(model), preprocess=TINY)
    assert set(helper.process(16, 12, 3, image, refine=False)) == {128}      # the new file's mask
    helper.close()


def test_goes_when_its_venv_is_removed(plugin_dir, tmp_path):
    """As when install.py --uninstall finds it busy, and deletes its venv anyway."""
    import site
    import venv

    folder = tmp_path / "venv"
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    paths = [str(Path(client.__file__).resolve().parents[2])] + site.getsitepackages()
    (plugin_dir / "helper.json").write_text(json.dumps({"python": str(python), "env": {
        "PYTHONPATH": os.pathsep.join(paths)}}))
    helper = client.warm_client(private(plugin_dir))
    assert helper.connection.hello["warm"]["executable"] == str(python)
    pid = helper.pid
    helper.close()
    shutil.rmtree(folder)
    assert wait_gone(pid)
    log = open(warm.log_path(warm.socket_path(warm.key([str(python)], {"PYTHONPATH": os.pathsep.join(paths)})))).read()
    assert "is gone (uninstalled?)" in log


def test_stop_all_stops_it(plugin_dir, tiny_model):
    helper = client.warm_client(private(plugin_dir))
    helper.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
    pid = helper.pid
    helper.close()
    assert warm.stop_all() == [(pid, "tiny")]
    assert wait_gone(pid) and not os.path.exists(sock_path(plugin_dir))
    assert warm.running() == []


def test_a_killed_helpers_socket_is_replaced_by_a_new_helper(plugin_dir, tiny_model):
    helper = client.warm_client(private(plugin_dir))
    old = helper.pid
    helper.close()
    kill(old)
    assert os.path.exists(sock_path(plugin_dir))      # left behind by the dead helper
    started = time.monotonic()
    helper = client.warm_client(private(plugin_dir))
    assert isinstance(helper, WarmClient) and helper.pid != old
    assert time.monotonic() - started < 20
    helper.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
    assert len(helper.process(16, 12, 3, bytes(16 * 12 * 3))) == 16 * 12
    helper.close()


def test_a_socket_file_nobody_listens_on_is_cleaned_up(plugin_dir):
    path = sock_path(plugin_dir)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with pytest.raises(warm.Unavailable, match="nothing listens"):
        warm.connect(path)
    helper = client.warm_client(private(plugin_dir))
    assert isinstance(helper, WarmClient) and helper.hello()["warm"]["pid"] == helper.pid
    helper.close()


def test_a_stuck_helper_is_given_up_on_within_the_connect_timeout(plugin_dir, monkeypatch):
    helper = client.warm_client(private(plugin_dir))
    pid = helper.pid
    helper.close()
    os.kill(pid, signal.SIGSTOP)
    try:
        monkeypatch.setattr(warm, "CONNECT_TIMEOUT", 1.0)
        started = time.monotonic()
        assert client.warm_client(private(plugin_dir)) is None      # this run: a private helper
        assert time.monotonic() - started < 1.0 + 2
    finally:
        os.kill(pid, signal.SIGCONT)
    helper = client.warm_client(private(plugin_dir))
    assert helper.pid == pid
    helper.close()


def test_a_second_run_at_the_same_time_is_told_busy(plugin_dir, tiny_model):
    first = client.warm_client(private(plugin_dir))
    first.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
    started = time.monotonic()
    assert client.warm_client(private(plugin_dir)) is None
    assert time.monotonic() - started < warm.CONNECT_TIMEOUT + 2
    # The first run's session is untouched.
    image = random_image(5, 12, 16, 3)
    assert np.array_equal(np.frombuffer(first.process(16, 12, 3, image, refine=False), np.uint8)
                          .reshape(12, 16), image[:, :, 0])
    first.close()


def test_another_users_connection_is_refused(plugin_dir, tiny_model):
    helper = client.warm_client(private(plugin_dir))
    pid = helper.pid
    helper.close()
    path = sock_path(plugin_dir)
    attempt = textwrap.dedent("""
        import socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(sys.argv[1])
        except OSError as error:
            print("connect: %s" % type(error).__name__)
            sys.exit()
        try:
            s.sendall(b'{"op":"hello"}\\n')
            print("reply: %r" % s.recv(100))
        except OSError as error:            # refused before or after the request went
            print("reply: %s" % type(error).__name__)
    """)

    python = python_for_anyone()

    def as_nobody():
        return subprocess.run([python, "-c", attempt, path], capture_output=True, text=True, timeout=30,
                              **AS_NOBODY).stdout.strip()

    # The folder keeps other users out...
    assert as_nobody() == "connect: PermissionError"
    # ...and were it open to them, the helper itself refuses them.
    folders = (os.environ["XDG_RUNTIME_DIR"], warm.folder())
    for folder in folders:
        os.chmod(folder, 0o711)
    os.chmod(path, 0o666)
    try:
        assert as_nobody() in ("reply: b''", "reply: ConnectionResetError", "reply: BrokenPipeError")
    finally:
        for folder in folders:
            os.chmod(folder, 0o700)
        os.chmod(path, 0o600)
    assert "refused a connection" in log_text(plugin_dir) and "uid %d" % NOBODY in log_text(plugin_dir)
    assert client.warm_client(private(plugin_dir)).pid == pid     # and still serves its own user


CLIENT_KILLED_MID_INFERENCE = textwrap.dedent("""
    import sys
    from remove_background.wire import client
    helper = client.warm_client(client.HelperClient.from_config(sys.argv[1]))
    helper.load("slow", threads=1, file=sys.argv[2], preprocess=%r)
    print("pid", helper.pid, flush=True)
    def progress(stage, fraction):
        if stage == "inference":
            print("inference", flush=True)
    helper.process(16, 12, 3, bytes(16 * 12 * 3), on_progress=progress)
    print("finished", flush=True)
""" % (TINY,))


def test_a_client_killed_mid_inference_is_abandoned_at_once(plugin_dir, slow):
    # How long the slow model takes here, through the warm helper itself.
    helper = client.warm_client(private(plugin_dir))
    helper.load("slow", threads=1, file=str(slow), preprocess=TINY)
    started = time.monotonic()
    helper.process(16, 12, 3, bytes(16 * 12 * 3))
    full = time.monotonic() - started
    pid = helper.pid
    helper.close()

    # As GIMP's Cancel does: the plug-in (here this child) is killed during inference.
    child = subprocess.Popen([sys.executable, "-c", CLIENT_KILLED_MID_INFERENCE, str(plugin_dir), str(slow)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().split() == ["pid", str(pid)]
    assert child.stdout.readline().strip() == "inference"
    child.kill()
    child.wait()
    killed = time.monotonic()
    # The next run gets the same helper, with the model loaded, long before that inference
    # would have ended.
    helper = client.warm_client(private(plugin_dir))
    assert helper.pid == pid
    assert helper.load("slow", threads=1, file=str(slow), preprocess=TINY)["seconds"] == 0
    answered = time.monotonic() - killed
    assert answered < full / 2, "waited %.1f s for a helper whose inference takes %.1f s" % (answered, full)
    assert "abandoned" in log_text(plugin_dir)
    helper.close()


def test_a_client_gone_while_sending_its_photo_leaves_the_helper_serving(plugin_dir, tiny_model):
    helper = client.warm_client(private(plugin_dir))
    pid = helper.pid
    helper.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
    helper.close()
    width, height = 1500, 1000
    connection = warm.connect(sock_path(plugin_dir))
    header = {"op": "process", "width": width, "height": height, "channels": 3, "size": width * height * 3}
    connection.writer.write(protocol.encode_header(header) + bytes(width * height * 3 // 2))
    connection.writer.flush()
    connection.close()                  # half the photo sent: the plug-in killed while reading it
    again = client.warm_client(private(plugin_dir))
    assert again.pid == pid
    assert again.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)["seconds"] == 0
    image = random_image(3, height, width, 3)
    assert len(again.process(width, height, 3, image)) == width * height
    again.close()
    assert "payload bytes" in log_text(plugin_dir)


def test_raising_from_progress_hangs_up_and_the_helper_stays(plugin_dir, tiny_model):
    class Cancelled(Exception):
        pass

    def cancel(stage, fraction):
        raise Cancelled()

    helper = client.warm_client(private(plugin_dir))
    pid = helper.pid
    helper.load("tiny", threads=1, file=str(tiny_model), preprocess=TINY)
    with pytest.raises(Cancelled):
        helper.process(16, 12, 3, bytes(16 * 12 * 3), on_progress=cancel)
    assert not helper.running
    again = client.warm_client(private(plugin_dir))
    assert again.pid == pid
    assert len(again.process(16, 12, 3, bytes(16 * 12 * 3))) == 16 * 12   # model still loaded
    again.close()


def test_a_warm_helper_killed_mid_request_is_a_helper_died_error(plugin_dir, slow):
    helper = client.warm_client(private(plugin_dir))
    helper.load("slow", threads=1, file=str(slow), preprocess=TINY)

    def kill_it(stage, fraction):
        if stage == "inference":
            os.kill(helper.pid, signal.SIGKILL)

    started = time.monotonic()
    with pytest.raises(HelperError) as caught:
        helper.process(16, 12, 3, bytes(16 * 12 * 3), on_progress=kill_it)
    assert caught.value.kind == HELPER_DIED and "warm helper" in caught.value.message
    assert time.monotonic() - started < 20
    assert not helper.running


def test_bad_frames_on_the_socket_keep_it_serving(plugin_dir, tiny_model):
    helper = client.warm_client(private(plugin_dir))
    helper.close()
    connection = warm.connect(sock_path(plugin_dir))
    connection.writer.write(b"not json\n")
    connection.writer.flush()
    assert protocol.read_message(connection.reader)[0]["error"] == "bad_header"
    protocol.write_message(connection.writer, {"op": "process", "width": 2, "height": 2, "channels": 3},
                           bytes(12))
    assert protocol.read_message(connection.reader)[0]["error"] == "no_model"
    connection.close()
    assert client.warm_client(private(plugin_dir)).hello()["op"] == "hello"


def test_a_session_goes_on_with_its_own_helper_when_the_warm_one_is_killed(plugin_dir, slow, capfd):
    image = bytes(16 * 12 * 3)
    with HelperSession(plugin_dir, "slow", threads=1, file=str(slow), preprocess=TINY, warm=True) as session:
        expected = session.mask(16, 12, 3, image, 1, None)
        assert isinstance(session.client, WarmClient)
        warm_pid = session.client.pid

        def kill_it(stage, fraction):
            if stage == "inference" and isinstance(session.client, WarmClient):
                os.kill(warm_pid, signal.SIGKILL)

        assert session.mask(16, 12, 3, image, 1, kill_it) == expected       # no error: done again
        assert not isinstance(session.client, WarmClient) and session.client.pid != warm_pid
    assert "Going on with a helper of this run's own" in capfd.readouterr().err


def test_a_session_without_warm_never_starts_one(plugin_dir, tiny_model):
    with HelperSession(plugin_dir, "tiny", threads=1, file=str(tiny_model), preprocess=TINY) as session:
        session.mask(16, 12, 3, bytes(16 * 12 * 3), 1, None)
        assert not isinstance(session.client, WarmClient)
    assert warm.running() == []


def test_refine_layer_mask_runs_on_the_warm_helper_without_a_model(plugin_dir):
    from remove_background.helper import snap

    x = np.arange(64)
    photo = np.broadcast_to(np.where(x[None, :, None] < 30, [200, 150, 70], [30, 160, 40]),
                            (48, 64, 3)).astype(np.uint8).copy()
    painted = np.broadcast_to(np.where(x < 36, 255, 0).astype(np.uint8), (48, 64)).copy()
    with HelperSession(plugin_dir, None, warm=True) as session:
        mask, colours = session.refine(64, 48, 3, photo.tobytes(), painted.tobytes(), snap=True)
        assert isinstance(session.client, WarmClient) and colours is None
    assert mask == snap.snap(photo, painted).tobytes()
    assert mask != painted.tobytes()


def test_the_memory_kept_between_runs_is_given_back_once_idle(monkeypatch):
    from remove_background.helper import warm as warm_helper

    given = []
    monkeypatch.setattr(warm_helper.memory, "give_back", lambda: given.append(time.monotonic()))
    listener = warm_helper.Listener("/nonexistent/socket", 600, os.getpid())
    ended = time.monotonic()
    listener.server.last_run_ended = ended
    listener.give_back_when_idle()
    assert given == []                               # a run has just ended: the next may come
    listener.server.last_run_ended = ended - warm_helper.GIVE_BACK_AFTER - 1
    listener.busy.acquire()                          # a run is being served
    listener.give_back_when_idle()
    assert given == []
    listener.busy.release()
    listener.give_back_when_idle()
    listener.give_back_when_idle()
    assert len(given) == 1                           # once for that run
    listener.server.last_run_ended = time.monotonic() - warm_helper.GIVE_BACK_AFTER - 1   # another run
    listener.give_back_when_idle()
    assert len(given) == 2
