"""install.py and the warm helper: --check reports it, --uninstall (and an install, which
replaces its code) stops it, through the checkout's own wire/warm.py."""

import json
import shutil
import sys
import tempfile
import types

import pytest

from install_support import load_install_module
from remove_background.wire import client, warm

pytestmark = pytest.mark.skipif(not warm.supported(), reason="no warm helper on %s" % sys.platform)


@pytest.fixture
def running_helper(tmp_path, monkeypatch):
    runtime = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    (tmp_path / "helper.json").write_text(json.dumps({"python": sys.executable}))
    helper = client.warm_client(client.HelperClient.from_config(tmp_path))
    pid = helper.pid
    helper.close()
    yield pid
    warm.stop_all()
    shutil.rmtree(runtime, ignore_errors=True)


def places(python):
    return types.SimpleNamespace(python=python)


def test_check_reports_the_running_warm_helper(running_helper, capsys):
    install = load_install_module()
    install.report_warm_helpers(places(sys.executable), install.Output())
    line = capsys.readouterr().out.strip()
    assert line.startswith("running: pid %d, model none loaded, idle " % running_helper), line
    assert "of 10 min 00 s" in line and "(helper" not in line


def test_check_says_when_none_runs(running_helper, capsys):
    install = load_install_module()
    warm.stop_all()
    install.report_warm_helpers(places(sys.executable), install.Output())
    assert "none running" in capsys.readouterr().out


def test_uninstall_stops_only_the_helpers_of_its_venv(running_helper, capsys):
    install = load_install_module()
    install.stop_warm_helpers(places("/some/other/venv/bin/python"), install.Output())
    assert [hello["warm"]["pid"] for _path, hello in warm.running()] == [running_helper]
    install.stop_warm_helpers(places(sys.executable), install.Output())
    assert "Stopped the warm helper (pid %d, model None)." % running_helper in capsys.readouterr().out
    assert warm.running() == []
