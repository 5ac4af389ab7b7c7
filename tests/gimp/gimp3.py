#!/usr/bin/env python3
"""A real GIMP 3 for the tests: finds or builds one, installs the plug-in into it, runs Python in it.

    python3 tests/gimp/gimp3.py prepare      (what tests/run.py calls before pytest)

Which GIMP: ``gimp-console-3.0`` when it is on PATH; otherwise a Debian 13 root with GIMP 3.0.4
at $GIMP3_ROOT or ~/.cache/gimp-remove-background/gimp3-root, built with debootstrap the first
time (needs root and the network; about a minute here, 1.6 GB) and reused after that.
GIMP runs there through chroot, inside a PID and mount namespace of its own (unshare) that
gives it a /proc; nothing stays mounted afterwards.

The plug-in and the helper are installed by install.py itself (into a GIMP user folder and a
venv of their own, never the user's), and the host's downloaded models are hard-linked in.
Standard library only: tests/run.py runs this before anything else is known to work.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gimp-remove-background"
ROOT = Path(os.environ.get("GIMP3_ROOT") or CACHE / "gimp3-root")
IN_GIMP = Path(__file__).resolve().parent / "in_gimp"

GIMP_CONSOLE = "gimp-console-3.0"
GIMP_GUI = "gimp-3.0"
DEBIAN_SUITE = "trixie"   # Debian 13: GIMP 3.0.4
PACKAGES = ["gimp", "python3-gi", "gir1.2-gimp-3.0", "python3-venv", "dbus", "ca-certificates",
            "xvfb", "xauth", "x11-apps", "imagemagick", "xdotool"]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PLUGIN_NAME = "remove-background"

# Left out of the copy of the checkout that goes into the root.
SKIPPED = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "*.onnx", "*.egg-info",
                                 "build", "dist", ".venv", "venv")


try:
    import fcntl
except ImportError:   # Windows: no chroot there, and no second session to wait for
    fcntl = None

# Held from prepare() until this process ends: one test session at a time uses a GIMP root
# (prepare() replaces the checkout and the plug-in that a running session is using).
_session_lock = None


class Unavailable(Exception):
    """No GIMP 3 can be had here; the message says why."""


def log(text):
    print("gimp3: " + text, file=sys.stderr, flush=True)


class Gimp3:
    """A GIMP 3 with the plug-in installed: on this machine (root None) or in a chroot."""

    def __init__(self, root=None):
        self.root = Path(root) if root else None
        if self.root:
            self.src = "/opt/remove-background-src"
            self.work = "/opt/remove-background-test"
        else:
            self.src = str(CHECKOUT)
            self.work = str(CACHE / "gimp3-host-test")
        self.gimp_dir = self.work + "/gimp"                 # GIMP3_DIRECTORY: a user folder of our own
        self.plugins_dir = self.gimp_dir + "/plug-ins"
        self.plugin_dir = self.plugins_dir + "/" + PLUGIN_NAME
        self.venv = self.work + "/venv"
        self.models = self.work + "/models"                 # REMOVE_BACKGROUND_MODELS
        self.runs = self.work + "/runs"

    def __repr__(self):
        return "Gimp3(%s)" % (self.root or "this machine")

    def host_path(self, inner):
        """Where a path of GIMP's world is on this machine."""
        return self.root / str(inner).lstrip("/") if self.root else Path(inner)

    def environment(self, extra=None):
        env = {"HOME": "/root" if self.root else str(Path.home()),
               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8",
               "GIMP3_DIRECTORY": self.gimp_dir,
               "REMOVE_BACKGROUND_MODELS": self.models}
        for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
            if name in os.environ:
                env[name] = os.environ[name]
        if self.root and (self.root / CA_BUNDLE.lstrip("/")).exists():
            env["PIP_CERT"] = CA_BUNDLE
        if not self.root:
            base = dict(os.environ)
            base.update(env)
            base["PATH"] = os.environ.get("PATH", env["PATH"])
            base["HOME"] = os.environ.get("HOME", env["HOME"])
            env = base
        env.update(extra or {})
        return env

    def command(self, argv, env=None):
        """(argument list, environment) that run ``argv`` in GIMP's world."""
        env = self.environment(env)
        argv = [str(part) for part in argv]
        if self.root:
            return (self.enter_root() + ["env", "-i"]
                    + ["%s=%s" % item for item in sorted(env.items())] + argv), None
        return argv, env

    def enter_root(self):
        """chroot, in a PID namespace of its own with its own /proc when unshare is there:
        onnxruntime reads /proc/cpuinfo (without it inference takes twice as long), the tests
        look for helper processes in /proc, and whatever is left running dies with the
        namespace.  The /proc mount exists only inside the namespace: nothing to clean up."""
        if shutil.which("unshare"):
            return ["unshare", "--mount", "--pid", "--fork", "--kill-child",
                    "--mount-proc=%s" % (self.root / "proc"), "chroot", str(self.root)]
        return ["chroot", str(self.root)]

    def has_proc(self):
        return self.root is None or bool(shutil.which("unshare"))

    def run(self, argv, env=None, timeout=600, check=True):
        command, environment = self.command(argv, env)
        result = subprocess.run(command, env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError("%s failed (exit status %d):\n%s\n%s" % (
                " ".join(argv[:3]), result.returncode, result.stdout.decode(errors="replace")[-3000:],
                result.stderr.decode(errors="replace")[-3000:]))
        return result

    def popen(self, argv, env=None, **kwargs):
        command, environment = self.command(argv, env)
        return subprocess.Popen(command, env=environment, **kwargs)

    # -- running Python inside GIMP ------------------------------------------------------------

    def has_tool(self, name):
        if self.root:
            return any(os.path.lexists(self.root / folder / name)   # links point inside the root
                       for folder in ("usr/bin", "bin", "usr/local/bin"))
        return shutil.which(name) is not None

    def run_script(self, script, params=None, timeout=900, gui=False):
        """Runs in_gimp/``script`` inside GIMP (python-fu-eval) and returns what it recorded.

        gui: GIMP's real window, on a virtual screen (Xvfb), instead of gimp-console.

        The script gets PARAMS (``params`` plus the paths below) and writes results.json into
        its own run folder through in_gimp/support.py; files it dumps land there too.
        Returns (results dict, run folder on this machine, GIMP's output).
        """
        name = Path(script).stem
        run_dir = "%s/%s-%d" % (self.runs, name, int(time.time() * 1000))
        host_run = self.host_path(run_dir)
        host_run.mkdir(parents=True)
        in_gimp = self.src + "/tests/gimp/in_gimp" if self.root else str(IN_GIMP)
        values = {"src": self.src, "work": self.work, "plugin_dir": self.plugin_dir,
                  "venv": self.venv, "models": self.models, "out": run_dir,
                  "in_gimp": in_gimp, "script": in_gimp + "/" + Path(script).name}
        values.update(params or {})
        (host_run / "params.json").write_text(json.dumps(values, indent=1))
        bootstrap = ("import sys, json; sys.path.insert(0, %r); "
                     "import support; support.main(%r)" % (in_gimp, run_dir + "/params.json"))
        started = time.monotonic()
        if gui:
            gimp = ["sh", in_gimp + "/with_xvfb.sh", GIMP_GUI, "--no-splash"]
        else:
            gimp = [GIMP_CONSOLE, "-i"]
        result = self.run(gimp + ["--batch-interpreter", "python-fu-eval", "-b", bootstrap,
                                  "--quit"], timeout=timeout, check=False)
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        results_file = host_run / "results.json"
        if not results_file.exists():
            raise RuntimeError("GIMP wrote no results for %s (exit status %d):\n%s"
                               % (script, result.returncode, output[-5000:]))
        results = json.loads(results_file.read_text())
        results["_seconds"] = round(time.monotonic() - started, 1)
        if results.get("_crashed"):
            raise RuntimeError("%s raised inside GIMP:\n%s\n--- GIMP's output:\n%s"
                               % (script, results["_crashed"], output[-3000:]))
        return results, host_run, output


# -- getting a GIMP ------------------------------------------------------------------------------

def root_is_built(root):
    return (root / "usr/bin" / GIMP_CONSOLE).exists() and (root / "usr/lib/python3").exists() \
        and (root / "usr/bin/Xvfb").exists()


def build_root(root):
    """Debian 13 with GIMP 3 via debootstrap: the first time only."""
    if os.geteuid() != 0:
        raise Unavailable("%s is not on PATH and building a GIMP 3 root at %s needs root "
                          "(debootstrap and chroot)" % (GIMP_CONSOLE, root))
    if not shutil.which("debootstrap"):
        raise Unavailable("%s is not on PATH and debootstrap is missing to build a GIMP 3 root "
                          "(apt-get install debootstrap)" % GIMP_CONSOLE)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log("building a Debian %s root with GIMP 3 at %s (first time only)" % (DEBIAN_SUITE, root))
    subprocess.run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(partial)], check=True)
    for name in ("etc/hosts", "etc/resolv.conf"):
        if Path("/", name).exists():
            shutil.copy2(Path("/", name), partial / name)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    chroot = ["chroot", str(partial), "env", "-i"] + ["%s=%s" % item for item in env.items()]
    subprocess.run(chroot + ["apt-get", "update"], check=True)
    subprocess.run(chroot + ["apt-get", "install", "-y", "--no-install-recommends"] + PACKAGES,
                   check=True)
    subprocess.run(chroot + ["apt-get", "clean"], check=True)
    if Path(CA_BUNDLE).exists():
        # This machine may reach the internet through a proxy whose certificate only its own
        # bundle holds.
        shutil.copy2(CA_BUNDLE, partial / CA_BUNDLE.lstrip("/"))
    partial.rename(root)
    log("built in %.0f s" % (time.monotonic() - started))


def find_gimp():
    """The Gimp3 to use; raises Unavailable with the reason when there is none."""
    if shutil.which(GIMP_CONSOLE):
        return Gimp3(None)
    if not root_is_built(ROOT):
        if ROOT.exists():
            raise Unavailable("%s exists but holds no complete GIMP 3 root; delete it to rebuild"
                              % ROOT)
        build_root(ROOT)
    if os.geteuid() != 0:
        raise Unavailable("the GIMP 3 root at %s needs root to chroot into" % ROOT)
    return Gimp3(ROOT)


def copy_checkout(gimp):
    """The checkout as it is now, into the root (install.py and the tests run from there)."""
    target = gimp.host_path(gimp.src)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(CHECKOUT, target, ignore=SKIPPED, symlinks=True)


def host_models_dir():
    if os.environ.get("REMOVE_BACKGROUND_MODELS"):
        return Path(os.environ["REMOVE_BACKGROUND_MODELS"])
    try:
        sys.path.insert(0, str(CHECKOUT))
        import model_fetch
        return Path(model_fetch.cache_dir())
    except Exception:  # model_fetch not importable here: its default place on Linux
        return CACHE / "models"
    finally:
        sys.path.remove(str(CHECKOUT))


def link_models(gimp):
    """The models downloaded on this machine, hard-linked (or copied) into GIMP's model folder."""
    source = host_models_dir()
    target = gimp.host_path(gimp.models)
    target.mkdir(parents=True, exist_ok=True)
    if not source.is_dir() or source.resolve() == target.resolve():
        return
    for path in source.rglob("*"):
        if not path.is_file() or path.name.endswith((".part", ".partial", ".tmp")):
            continue
        destination = target / path.relative_to(source)
        if destination.exists() and os.path.samefile(path, destination):
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            destination.unlink()
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)


def install(gimp):
    """install.py, run in GIMP's world, puts the plug-in and the helper's venv in our folders."""
    gimp.host_path(gimp.plugins_dir).mkdir(parents=True, exist_ok=True)
    python = "python3" if gimp.root else sys.executable
    result = gimp.run([python, gimp.src + "/install.py", "--venv", gimp.venv,
                       "--plugins-dir", gimp.plugins_dir, "--no-model", "--quiet"],
                      timeout=1800, check=False)
    if result.returncode != 0:
        raise RuntimeError("install.py failed in %r (exit status %d):\n%s\n%s" % (
            gimp, result.returncode, result.stdout.decode(errors="replace")[-4000:],
            result.stderr.decode(errors="replace")[-4000:]))


def lock_session(gimp):
    global _session_lock
    if _session_lock is not None or fcntl is None:
        return
    path = gimp.host_path(gimp.work + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another test session is using %r; waiting for it to finish" % gimp)
        fcntl.flock(handle, fcntl.LOCK_EX)
    _session_lock = handle


def prepare():
    """A Gimp3 with this checkout's plug-in installed and the host's models linked in."""
    started = time.monotonic()
    gimp = find_gimp()
    lock_session(gimp)
    if gimp.root:
        copy_checkout(gimp)
    link_models(gimp)
    install(gimp)
    runs = gimp.host_path(gimp.runs)
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    log("%r ready in %.1f s" % (gimp, time.monotonic() - started))
    return gimp


def main(argv):
    if argv[1:] != ["prepare"]:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        prepare()
    except Unavailable as reason:
        log("no GIMP 3: %s" % reason)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
