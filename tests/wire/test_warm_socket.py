"""GIMP's side of the warm helper (wire/warm.py), standard library only: the private folder, the
socket's name, the settings, and that a socket held by another user is never talked to."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from other_user import AS_NOBODY, NOBODY, need_root, python_for_anyone
from remove_background.wire import client, warm

pytestmark = pytest.mark.skipif(not warm.supported(), reason="no warm helper on %s" % sys.platform)


@pytest.fixture
def runtime(monkeypatch):
    folder = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
    yield folder
    subprocess.run(["rm", "-rf", folder])


def test_the_folder_is_private_to_this_user(runtime, monkeypatch):
    path = warm.folder()
    assert path == os.path.join(runtime, "remove-background")
    assert os.stat(path).st_mode & 0o777 == 0o700 and os.stat(path).st_uid == os.geteuid()
    os.chmod(path, 0o755)                             # opened to others: closed again
    assert warm.folder() == path and os.stat(path).st_mode & 0o777 == 0o700
    os.rmdir(path)
    elsewhere = tempfile.mkdtemp(dir=runtime)
    os.symlink(elsewhere, path)                      # even a link to a private folder of ours
    with pytest.raises(warm.Unavailable, match="not a folder of this user's"):
        warm.folder()
    # Without $XDG_RUNTIME_DIR: a folder of this user's own in the temporary folder.
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(tempfile, "tempdir", runtime)
    assert warm.folder() == os.path.join(runtime, "remove-background-%d" % os.geteuid())


def test_a_folder_of_another_user_is_never_used(runtime):
    need_root()
    path = os.path.join(runtime, "remove-background")
    os.mkdir(path, 0o700)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(warm.Unavailable, match="not a folder of this user's"):
        warm.folder()
    assert os.stat(path).st_uid == NOBODY and os.stat(path).st_mode & 0o777 == 0o700


def test_idle_timeout_settings():
    assert warm.idle_timeout({}, {}) == 600
    assert warm.idle_timeout({"warm_idle_seconds": 30}, {}) == 30
    assert warm.idle_timeout({"warm_idle_seconds": 30}, {warm.IDLE_VARIABLE: "0"}) == 0
    assert warm.idle_timeout({}, {warm.IDLE_VARIABLE: "2.5"}) == 2.5
    assert warm.idle_timeout({}, {warm.IDLE_VARIABLE: "soon"}) == 600
    assert warm.idle_timeout({"warm_idle_seconds": -5}, {}) == 0


def test_one_socket_per_helper_command_and_environment(runtime):
    one = warm.key(["/venv/bin/python"], {"REMOVE_BACKGROUND_MODELS": "/a"})
    assert one == warm.key(["/venv/bin/python"], {"REMOVE_BACKGROUND_MODELS": "/a"})
    assert one != warm.key(["/venv/bin/python"], {"REMOVE_BACKGROUND_MODELS": "/b"})
    assert one != warm.key(["/other/bin/python"], {"REMOVE_BACKGROUND_MODELS": "/a"})
    path = warm.socket_path(one)
    assert os.path.dirname(path) == warm.folder() and path.endswith(".sock")
    with pytest.raises(warm.Unavailable, match="too long"):
        warm.socket_path(one, base="/tmp/" + "x" * 100)


def test_nothing_to_connect_to(runtime):
    path = warm.socket_path("0" * 16)
    with pytest.raises(warm.Unavailable, match="no warm helper is running"):
        warm.connect(path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    started = time.monotonic()
    with pytest.raises(warm.Unavailable, match="nothing listens"):
        warm.connect(path)
    assert time.monotonic() - started < 1


def test_a_listener_that_never_answers_is_given_up_on(runtime):
    path = warm.socket_path("1" * 16)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(warm.Unavailable, match="did not answer within 0.5 s"):
            warm.connect(path, timeout=0.5)
        assert time.monotonic() - started < 3
    finally:
        silent.close()


def test_peer_credentials_of_this_process():
    one, other = socket.socketpair(socket.AF_UNIX)
    try:
        assert warm.peer_credentials(one) == (os.getpid(), os.geteuid())
        assert warm.same_user(one) == os.getpid()
    finally:
        one.close()
        other.close()


FAKE_HELPER = textwrap.dedent("""
    import os, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sys.argv[1])
    os.chmod(sys.argv[1], 0o666)
    s.listen(1)
    print("ready", flush=True)
    connection, _ = s.accept()
    connection.recv(100)
    connection.sendall(b'{"op":"hello","protocol":1,"helper":"0.1.0","warm":{"pid":1}}\\n')
    connection.recv(100)
""")


def test_a_socket_of_another_user_is_never_talked_to(runtime):
    """Someone else's process answering on the path (were the folder not private): refused."""
    shared = tempfile.mkdtemp(prefix="shared-", dir="/tmp")
    os.chmod(shared, 0o777)
    path = os.path.join(shared, "h.sock")
    python = python_for_anyone()
    fake = subprocess.Popen([python, "-c", FAKE_HELPER, path], stdout=subprocess.PIPE, text=True,
                            **AS_NOBODY)
    try:
        assert fake.stdout.readline().strip() == "ready"
        with pytest.raises(warm.Unavailable, match="runs as uid %d" % NOBODY):
            warm.connect(path)
    finally:
        fake.kill()
        fake.wait()
        subprocess.run(["rm", "-rf", shared])


def test_no_warm_helper_where_it_cannot_work(tmp_path, runtime):
    (tmp_path / "helper.json").write_text(json.dumps({"python": sys.executable}))
    private = client.HelperClient.from_config(tmp_path)
    private.host_spawn = True           # a Flatpak: the helper runs on the host
    assert client.warm_client(private) is None
    assert not os.listdir(warm.folder())
