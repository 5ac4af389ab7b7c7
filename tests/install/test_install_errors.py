"""install.py's error paths: each ends with one clear message that says how to fix it, no traceback."""

import glob
import os
import shutil
import subprocess

import pytest

from install_support import INSTALL, ROOT, Home, load_install_module, run_install
from needs import need

UNREACHABLE = "http://127.0.0.1:9/"


def assert_clean_failure(run):
    assert run.code == 1, run
    assert "install.py: error: " in run.stderr, run
    assert "Fix:" in run.stderr, run
    assert "Traceback" not in run.output, run


def test_python_too_old_is_refused_with_the_fix():
    install = load_install_module()
    message = install.python_too_old((3, 8, 18, "final", 0))
    assert "Python 3.8 is too old" in message and "Python 3.9 or newer" in message
    assert "Fix:" in message
    assert install.python_too_old((3, 9, 0)) is None
    assert install.python_too_old((3, 13, 1)) is None
    assert install.python_too_old((4, 0, 0)) is None


def old_interpreters():
    """Pythons older than 3.9 on this machine (pyenv's, or on PATH), as {path: "X.Y"}."""
    candidates = glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python"))
    candidates += [shutil.which(name) for name in ("python2.7", "python3.6", "python3.7", "python3.8")]
    found = {}
    for path in filter(None, candidates):
        try:
            done = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                                  timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        version = done.stdout.strip()
        if done.returncode == 0 and tuple(int(part) for part in version.split(".")) < (3, 9):
            found[os.path.realpath(path)] = version
    return found


def test_old_interpreters_get_the_message_not_a_syntax_error(tmp_path):
    interpreters = old_interpreters()
    need(interpreters, "no Python older than 3.9 on this machine")
    home = Home(tmp_path)
    for python, version in sorted(interpreters.items()):
        run = run_install(["--no-model"], home.env, python=python)
        assert_clean_failure(run)
        assert "Python %s is too old" % version in run.stderr
    assert not home.data.exists()


@pytest.mark.parametrize("module", ["venv", "ensurepip"])
def test_missing_venv_support_names_the_package(tmp_path, module):
    """A Python without venv or ensurepip (Debian without python3-venv), made by hiding the module."""
    home = Home(tmp_path)
    wrapper = ("import runpy, sys; sys.modules[%r] = None; sys.argv = sys.argv[1:];"
               "runpy.run_path(sys.argv[0], run_name='__main__')" % module)
    venv = tmp_path / "venv"
    run = run_install(["--venv", venv, "--no-model"], home.env, prefix=["-c", wrapper, str(INSTALL)])
    assert_clean_failure(run)
    assert "apt install python3-venv" in run.stderr
    assert ("no venv module" if module == "venv" else "not ensurepip") in run.stderr
    assert not venv.exists()


def offline_env(home):
    """pip with an index that refuses connections and none of this machine's local wheel folders."""
    env = dict(home.env)
    for name in list(env):
        if name.startswith("PIP_") and name != "PIP_CERT":
            del env[name]
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=UNREACHABLE + "simple/",
               XDG_CACHE_HOME=str(home.root / "cache"), NPM_CONFIG_REGISTRY=UNREACHABLE)
    return env


def test_no_network_for_pip_names_the_offline_route_which_works(tmp_path):
    home = Home(tmp_path)
    env = offline_env(home)
    venv = tmp_path / "venv"
    plugins = tmp_path / "plug-ins"
    # pip's default retries log the refused connections; with none, only "no matching distribution" is left.
    for retries in ("5", "0"):
        run = run_install(["--venv", venv, "--plugins-dir", plugins, "--no-model"], dict(env, PIP_RETRIES=retries))
        assert_clean_failure(run)
        assert "pip could not reach the package index" in run.stderr
        assert "python3 -m pip download --dest wheels setuptools wheel %s" % ROOT in run.stderr
        assert "python3 install.py --find-links wheels" in run.stderr
        assert not (plugins / "remove-background").exists()

    # The offline route, as the message gives it: wheels fetched where there is network (here: this
    # machine's normal pip configuration), then install.py --find-links with no network at all.
    checkout = tmp_path / "checkout"   # pip download builds inside the folder it is given
    shutil.copytree(str(ROOT), str(checkout), ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info",
                                                                             "build"))
    wheels = tmp_path / "wheels"
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "download", "--disable-pip-version-check",
                           "--quiet", "--dest", str(wheels), "setuptools", "wheel", str(checkout)],
                          env=dict(home.env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    need(done.returncode == 0, "pip download cannot reach a package index here:\n" + done.stdout[-2000:])
    run = run_install(["--venv", venv, "--plugins-dir", plugins, "--no-model", "--find-links", wheels], env)
    assert run.code == 0, run
    assert "Successfully installed" in run.stdout
    assert (plugins / "remove-background" / "helper.json").is_file()
    assert "Skipped the proof: --no-model was given and no model is installed" in run.stdout
    done = subprocess.run([str(venv / "bin" / "remove-background"), "--version"], stdout=subprocess.PIPE,
                          universal_newlines=True)
    assert done.returncode == 0 and load_install_module().project_version() in done.stdout


def test_unknown_model_is_refused_before_anything_is_made(tmp_path):
    home = Home(tmp_path, gimp_versions=("3.0",))
    run = home.run("--model", "no-such-model")
    assert_clean_failure(run)
    assert "no-such-model" in run.stderr and "isnet" in run.stderr and "--no-model" in run.stderr
    assert not home.data.exists() and not home.plugin_dir().exists()


def test_a_foreign_venv_folder_is_left_alone(tmp_path):
    home = Home(tmp_path)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    run = home.run("--venv", folder, "--no-model")
    assert_clean_failure(run)
    assert "was not made by install.py" in run.stderr and "--venv" in run.stderr
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_uninstall_with_nothing_installed_says_so(tmp_path):
    home = Home(tmp_path)
    run = home.run("--uninstall")
    assert run.code == 0, run
    assert "Nothing to uninstall" in run.stdout
    assert not any(home.home.iterdir())
