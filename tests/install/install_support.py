"""Support for the install tests: runs install.py for real, in temporary homes with their own venv,
GIMP folders and model folder.

The first install (venv + pip) is the slow part, so a test module shares one installed home
across its tests; the tests that need a venv of their own make one.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "install.py"
MODEL = "isnet"

# The machine's own variables that would point install.py outside the temporary home.
PLACE_VARIABLES = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "APPDATA", "LOCALAPPDATA", "REMOVE_BACKGROUND_MODELS")


def load_install_module():
    spec = importlib.util.spec_from_file_location("install_under_test", str(INSTALL))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Run:
    def __init__(self, completed, seconds):
        self.code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.seconds = seconds

    @property
    def output(self):
        return self.stdout + self.stderr

    def __repr__(self):
        return "exit %s after %.1f s\n--- stdout\n%s\n--- stderr\n%s" % (
            self.code, self.seconds, self.stdout[-6000:], self.stderr[-3000:])


def run_install(args, env, python=None, prefix=None, script=INSTALL, timeout=900):
    """Runs ``python install.py ARGS`` in its checkout, as its README says; ``prefix`` replaces
    ``install.py`` (to wrap it)."""
    command = [python or sys.executable] + (prefix or [str(script)]) + [str(arg) for arg in args]
    started = time.monotonic()
    completed = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=timeout, cwd=str(Path(script).parent))
    return Run(completed, time.monotonic() - started)


def snapshot_checkout(destination):
    """A copy of the checkout as it is now, for tests that must not see it change under them (other
    work going on in it) and must not write into it."""
    shutil.copytree(str(ROOT), str(destination), ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "*.part"))
    return destination


class Home:
    """A temporary user: HOME, its model folder, and the environment install.py runs with."""

    def __init__(self, root, gimp_versions=(), flatpak_versions=(), models=None, checkout=ROOT):
        self.root = root
        self.checkout = checkout
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.models = models or root / "models"
        for version in gimp_versions:
            (self.home / ".config" / "GIMP" / version).mkdir(parents=True)
        for version in flatpak_versions:
            (self.home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / version).mkdir(parents=True)
        self.env = dict(os.environ)
        for name in PLACE_VARIABLES:
            self.env.pop(name, None)
        self.env["HOME"] = str(self.home)
        self.env["REMOVE_BACKGROUND_MODELS"] = str(self.models)
        # The machine's tools keep their folders where they always are, outside the compared home:
        # pip its download cache, and rustup (which pip's build of the wheel wakes up) its settings.
        for name, default in (("XDG_CACHE_HOME", ".cache"), ("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")):
            self.env[name] = os.environ.get(name) or str(Path.home() / default)

    @property
    def data(self):
        return self.home / ".local" / "share" / "gimp-remove-background"

    @property
    def venv(self):
        return self.data / "venv"

    @property
    def python(self):
        return self.venv / "bin" / "python"

    def plugin_dir(self, version="3.0", flatpak=False):
        config = self.home / ".var" / "app" / "org.gimp.GIMP" / "config" if flatpak else self.home / ".config"
        return config / "GIMP" / version / "plug-ins" / "remove-background"

    def tree(self):
        """Every path under HOME and the model folder, with each file's size and mtime."""
        found = {}
        for top in (self.home, self.models):
            for path in sorted(top.rglob("*")) if top.exists() else []:
                info = path.lstat()
                found[str(path)] = None if path.is_dir() else (info.st_size, info.st_mtime_ns)
        return found

    def run(self, *args, **options):
        options.setdefault("script", self.checkout / "install.py")
        return run_install(args, self.env, **options)


def installed_model_file():
    """The real model's file in the machine's model cache, or None."""
    sys.path.insert(0, str(ROOT))
    try:
        import model_fetch
        return model_fetch.installed_path(MODEL)
    except Exception:  # noqa: BLE001 - not installed, or model_fetch not importable
        return None
    finally:
        sys.path.remove(str(ROOT))


def seed_models(folder):
    """Puts the real model into ``folder`` the way `model_fetch import` does, without network."""
    source = installed_model_file()
    if source is None:
        return False
    sys.path.insert(0, str(ROOT))
    try:
        import model_fetch
        model_fetch.Store(cache_dir=folder).import_file(MODEL, source)
    finally:
        sys.path.remove(str(ROOT))
    return True
