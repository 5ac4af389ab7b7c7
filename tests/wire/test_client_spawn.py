"""How the client finds and starts the helper, and that it never leaves a process behind."""

import json
import sys
import time

import pytest

from remove_background.wire import client
from remove_background.wire.client import HelperClient, HelperError


def test_missing_config_says_how_to_install(tmp_path):
    with pytest.raises(HelperError) as caught:
        HelperClient.from_config(tmp_path)
    assert caught.value.kind == client.NOT_INSTALLED
    assert "python3 install.py" in caught.value.message


def test_missing_python_says_how_to_install(tmp_path):
    (tmp_path / "helper.json").write_text(json.dumps({"python": str(tmp_path / "no" / "python")}))
    with pytest.raises(HelperError) as caught:
        HelperClient.from_config(tmp_path)
    assert caught.value.kind == client.NOT_INSTALLED
    assert "python3 install.py" in caught.value.message and "no" in caught.value.message
    (tmp_path / "helper.json").write_text("{not json")
    with pytest.raises(HelperError) as caught:
        HelperClient.from_config(tmp_path)
    assert caught.value.kind == client.NOT_INSTALLED


def test_config_starts_the_helper_despite_gimps_environment(tmp_path, monkeypatch):
    (tmp_path / "helper.json").write_text(json.dumps({"python": sys.executable,
                                                      "env": {"REMOVE_BACKGROUND_PROVIDER": "cpu"}}))
    # A bundled GIMP's Python settings: the helper's own Python would not even start with them.
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "gimp-bundle"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "gimp-bundle" / "lib"))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path / "gimp-bundle" / "lib"))
    with HelperClient.from_config(tmp_path) as helper:
        assert helper.command == [sys.executable, "-m", "remove_background.helper.serve"]
        assert helper.hello()["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert not helper.running


def test_flatpak_spawn_command():
    helper = HelperClient(["/home/me/venv/bin/python", "-m", "remove_background.helper.serve"],
                          env={"REMOVE_BACKGROUND_MODELS": "/home/me/models"}, host_spawn=True)
    assert helper.launch_command() == [
        "flatpak-spawn", "--host", "--watch-bus", "--env=REMOVE_BACKGROUND_MODELS=/home/me/models",
        "/home/me/venv/bin/python", "-m", "remove_background.helper.serve"]
    assert HelperClient(["/x"], host_spawn=False).launch_command() == ["/x"]


def test_which_pythons_a_flatpak_can_run_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    inside = tmp_path / ".var" / "app" / "org.gimp.GIMP" / "venv" / "bin" / "python3"
    outside = tmp_path / "venv" / "bin" / "python3"
    for path in (inside, outside):
        path.parent.mkdir(parents=True)
        path.write_text("")
    assert client.made_in_sandbox(str(inside))
    assert not client.made_in_sandbox(str(outside))      # a host venv: flatpak-spawn --host
    assert not client.made_in_sandbox(str(tmp_path / ".var" / "app" / "missing"))


def test_environment_cleaning():
    env = client.clean_environment({"PATH": "/usr/bin", "PYTHONHOME": "/app", "GI_TYPELIB_PATH": "/app",
                                    "DYLD_LIBRARY_PATH": "/a", "HOME": "/home/me"})
    assert env == {"PATH": "/usr/bin", "HOME": "/home/me"}


def test_close_ends_a_helper_that_ignores_end_of_input():
    helper = HelperClient([sys.executable, "-c", "import time; time.sleep(120)"])
    helper.start()
    started = time.monotonic()
    helper.close()
    assert time.monotonic() - started < client.CLOSE_TIMEOUT + 5
    assert not helper.running


def test_unstartable_command_is_not_installed(tmp_path):
    with pytest.raises(HelperError) as caught:
        HelperClient([str(tmp_path / "missing-python")]).start()
    assert caught.value.kind == client.NOT_INSTALLED


def test_a_helper_that_never_answers_models_is_stopped(monkeypatch):
    # GIMP asks for the models while building its procedures: a stuck helper must not hang it.
    monkeypatch.setattr(client, "MODELS_TIMEOUT", 1.0)
    silent = HelperClient([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    with pytest.raises(HelperError) as caught:
        silent.models()
    assert caught.value.kind == client.HELPER_DIED
    assert "no answer within 1 seconds" in str(caught.value)
    assert time.monotonic() - started < 15
    assert silent._process is None or silent._process.poll() is not None


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_helper_killed_like_the_oom_killer_says_memory_may_be_why():
    suicide = "import os, signal, sys; sys.stdin.readline(); os.kill(os.getpid(), signal.SIGKILL)"
    helper = HelperClient([sys.executable, "-c", suicide])
    with pytest.raises(HelperError) as caught:
        helper.hello()
    assert caught.value.kind == client.HELPER_DIED
    assert "exit status -9" in str(caught.value) and "lack of memory" in str(caught.value)
