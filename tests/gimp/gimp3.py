#!/usr/bin/env python3
"""Real GIMPs for the tests: finds or builds them, installs the plug-in into each, runs Python in them.

    python3 tests/gimp/gimp3.py prepare [3.0] [3.2]    (what tests/run.py calls before pytest)

The tests run in every GIMP of VERSIONS: GIMP 3.0 and GIMP 3.2.  For each, ``gimp-console-3.N``
when it is on PATH; otherwise a Debian root holding that GIMP (Debian 13 "trixie": GIMP 3.0.4;
Debian "forky": GIMP 3.2.x) at $GIMP3_ROOT / $GIMP32_ROOT or ~/.cache/gimp-remove-background/
gimp3-root / gimp3.2-root, built with debootstrap the first time (needs root and the network;
2 to 5 minutes and about 1.1 GB each, 1.6 GB with the tests' venv and models) and reused after
that.  What debootstrap and apt print goes to a log beside the root (ROOT.log), named when a
step fails.
GIMP runs there through chroot, inside a PID and mount namespace of its own (unshare) that
gives it a /proc; nothing stays mounted afterwards.

The plug-in and the helper are installed by install.py itself (into a GIMP user folder and a
venv of their own, never the user's), and the host's downloaded models are copied in.
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
IN_GIMP = Path(__file__).resolve().parent / "in_gimp"


class Version:
    """One GIMP the tests run in, and the Debian release whose root holds it."""

    def __init__(self, number, suite, root_name, root_variable):
        self.number = number                            # "3.2": GIMP's user folder is GIMP/3.2
        self.suite = suite
        self.root_name = root_name
        self.root_variable = root_variable
        self.console = "gimp-console-" + number
        self.gui = "gimp-" + number

    def root(self):
        return Path(os.environ.get(self.root_variable) or CACHE / self.root_name)

    def __repr__(self):
        return "GIMP " + self.number


VERSIONS = {
    "3.0": Version("3.0", "trixie", "gimp3-root", "GIMP3_ROOT"),      # Debian 13: GIMP 3.0.4
    "3.2": Version("3.2", "forky", "gimp3.2-root", "GIMP32_ROOT"),    # Debian 14 (testing): 3.2.x
}
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
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
_session_locks = {}


class Unavailable(Exception):
    """No GIMP 3 can be had here; the message says why."""


def log(text):
    print("gimp3: " + text, file=sys.stderr, flush=True)


class Gimp3:
    """A GIMP 3 with the plug-in installed: on this machine (root None) or in a chroot."""

    def __init__(self, version, root=None):
        self.version = version
        self.root = Path(root) if root else None
        if self.root:
            self.src = "/opt/remove-background-src"
            self.work = "/opt/remove-background-test"
        else:
            self.src = str(CHECKOUT)
            self.work = str(CACHE / ("gimp%s-host-test" % version.number))
        self.gimp_dir = self.work + "/gimp"                 # GIMP3_DIRECTORY: a user folder of our own
        self.plugins_dir = self.gimp_dir + "/plug-ins"
        self.plugin_dir = self.plugins_dir + "/" + PLUGIN_NAME
        self.venv = self.work + "/venv"
        self.models = self.work + "/models"                 # REMOVE_BACKGROUND_MODELS
        self.runs = self.work + "/runs"

    def __repr__(self):
        return "%r (%s)" % (self.version, self.root or "this machine")

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
        return {name: value for name, value in env.items() if value is not None}   # None: unset

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

    def run_script(self, script, params=None, timeout=900, gui=False, env=None):
        """Runs in_gimp/``script`` inside GIMP (python-fu-eval) and returns what it recorded.

        gui: GIMP's real window, on a virtual screen (Xvfb), instead of gimp-console.
        env: variables to change for GIMP (None unsets one).

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
            gimp = ["sh", in_gimp + "/with_xvfb.sh", self.version.gui, "--no-splash"]
        else:
            gimp = [self.version.console, "-i"]
        result = self.run(gimp + ["--batch-interpreter", "python-fu-eval", "-b", bootstrap,
                                  "--quit"], env=env, timeout=timeout, check=False)
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

def root_is_built(version, root):
    return (root / "usr/bin" / version.console).exists() and (root / "usr/lib/python3").exists() \
        and (root / "usr/bin/Xvfb").exists()


def build_log(root):
    return root.with_name(root.name + ".log")


def run_step(number, total, what, command, log_path):
    """One step of the build: a line here, everything it prints into the log."""
    log("  [%d/%d] %s" % (number, total, what))
    with open(log_path, "a") as handle:
        handle.write("\n=== %s\n$ %s\n" % (what, " ".join(command)))
        handle.flush()
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        with open(log_path, errors="replace") as handle:
            tail = handle.read().splitlines()[-15:]
        raise Unavailable("building the GIMP root failed at \"%s\" (exit status %d). Its last lines:\n"
                          "    %s\nThe whole log: %s" % (what, done.returncode, "\n    ".join(tail), log_path))


def build_root(version, root):
    """A Debian root with this GIMP, via debootstrap: the first time only."""
    if os.geteuid() != 0:
        raise Unavailable("%s is not on PATH and building a GIMP root at %s needs root "
                          "(debootstrap and chroot)" % (version.console, root))
    if not shutil.which("debootstrap"):
        raise Unavailable("%s is not on PATH and debootstrap is missing to build a GIMP root "
                          "(apt-get install debootstrap)" % version.console)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log_path = build_log(root)
    log_path.write_text("")
    started = time.monotonic()
    log("building a Debian %s root with %r at %s (first time only; a few minutes, about 1.1 GB; "
        "its log: %s)" % (version.suite, version, root, log_path))
    debootstrap = ["debootstrap", "--variant=minbase", version.suite, str(partial), DEBIAN_MIRROR]
    if not (DEBOOTSTRAP_SCRIPTS / version.suite).exists():
        # An older debootstrap knows no newer release; testing's is built like sid.
        debootstrap.append(str(DEBOOTSTRAP_SCRIPTS / "sid"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    # A testing release's Release file is valid for a week only: a mirror (or a snapshot of one)
    # that is a little behind must not stop a throwaway test root.
    apt = ["chroot", str(partial), "env", "-i"] + ["%s=%s" % item for item in env.items()] + \
        ["apt-get", "-o", "Acquire::Check-Valid-Until=false"]
    run_step(1, 4, "debootstrap: Debian %s's base system" % version.suite, debootstrap, log_path)
    for name in ("etc/hosts", "etc/resolv.conf"):
        if Path("/", name).exists():
            shutil.copy2(Path("/", name), partial / name)
    run_step(2, 4, "apt-get update", apt + ["update"], log_path)
    run_step(3, 4, "apt-get install %s" % " ".join(PACKAGES),
             apt + ["install", "-y", "--no-install-recommends"] + PACKAGES, log_path)
    run_step(4, 4, "apt-get clean", apt + ["clean"], log_path)
    if Path(CA_BUNDLE).exists():
        # This machine may reach the internet through a proxy whose certificate only its own
        # bundle holds.
        shutil.copy2(CA_BUNDLE, partial / CA_BUNDLE.lstrip("/"))
    if not root_is_built(version, partial):
        raise Unavailable("the root built at %s holds no %s; see %s" % (partial, version.console, log_path))
    partial.rename(root)
    log("built in %.0f s" % (time.monotonic() - started))


def find_gimp(version):
    """The Gimp3 of this version to use; raises Unavailable with the reason when there is none."""
    if shutil.which(version.console):
        return Gimp3(version, None)
    root = version.root()
    if not root_is_built(version, root):
        if root.exists():
            raise Unavailable("%s exists but holds no complete %r root; delete it to rebuild"
                              % (root, version))
        build_root(version, root)
    if os.geteuid() != 0:
        raise Unavailable("the %r root at %s needs root to chroot into" % (version, root))
    return Gimp3(version, root)


def copy_checkout(gimp):
    """The checkout as it is now, into the root (install.py and the tests run from there)."""
    target = gimp.host_path(gimp.src)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(CHECKOUT, target, ignore=SKIPPED, symlinks=True)


def host_models():
    """(this machine's model folder, {model name: file name} of the models verified there)."""
    sys.path.insert(0, str(CHECKOUT))
    try:
        import model_fetch
        store = model_fetch.Store(cache_dir=os.environ.get("REMOVE_BACKGROUND_MODELS") or None)
        return Path(store.cache_dir), {model.name: model.file for model in store.models()
                                       if store.is_installed(model.name)}
    except Exception:  # noqa: BLE001 - model_fetch not importable or its registry unreadable here: no models
        return None, {}
    finally:
        sys.path.remove(str(CHECKOUT))


def copy_models(gimp):
    """The models verified on this machine, copied into GIMP's model folder with their stamps and
    verified there.

    Copied, not hard-linked: a new link changes the file's ctime, which model_fetch's stamps
    record, so linking would spoil this machine's own stamps.  A file already there (same size
    and mtime) is not copied again.  Their optimised graphs are not copied: GIMP's onnxruntime
    may be another version; the helper saves its own at the first run.
    """
    source, files = host_models()
    target = gimp.host_path(gimp.models)
    target.mkdir(parents=True, exist_ok=True)
    if source is None or source.resolve() == target.resolve():
        return
    copied = []
    for name, file in sorted(files.items()):
        path, destination = source / file, target / file
        info = path.stat()
        if destination.exists() and (destination.stat().st_size, destination.stat().st_mtime_ns) == \
                (info.st_size, info.st_mtime_ns):
            continue
        partial = destination.with_name(destination.name + ".tmp")
        shutil.copy2(path, partial)
        os.replace(partial, destination)
        # The stamp too: a model made on this machine (isnet-int8) has no pin to check a copy
        # against, only its stamp's key and digest (the copy's new inode has it hashed again).
        stamp = path.with_name(path.name + ".verified")
        if stamp.is_file():
            shutil.copy2(stamp, destination.with_name(destination.name + ".verified"))
        copied.append(name)
    if copied:
        gimp.run([gimp.venv + "/bin/python", "-m", "model_fetch", "verify"] + copied, timeout=900)


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
    path = gimp.host_path(gimp.work + ".lock")
    if path in _session_locks or fcntl is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another test session is using %r; waiting for it to finish" % gimp)
        fcntl.flock(handle, fcntl.LOCK_EX)
    _session_locks[path] = handle


def prepare(number):
    """The Gimp3 of VERSIONS[number], with this checkout's plug-in installed and the host's models
    linked in."""
    started = time.monotonic()
    gimp = find_gimp(VERSIONS[number])
    lock_session(gimp)
    if gimp.root:
        copy_checkout(gimp)
    install(gimp)
    copy_models(gimp)
    # GIMP keeps each plug-in's registration (its arguments, the model list and default among
    # them) in pluginrc until the plug-in file changes: without it, GIMP registers the plug-in
    # afresh, with the models installed now.
    pluginrc = gimp.host_path(gimp.gimp_dir + "/pluginrc")
    if pluginrc.exists():
        pluginrc.unlink()
    runs = gimp.host_path(gimp.runs)
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    log("%r ready in %.1f s" % (gimp, time.monotonic() - started))
    return gimp


def main(argv):
    numbers = argv[2:] or list(VERSIONS)
    if argv[1:2] != ["prepare"] or any(number not in VERSIONS for number in numbers):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    missing = 0
    for number in numbers:
        try:
            prepare(number)
        except Unavailable as reason:
            log("no %r: %s" % (VERSIONS[number], reason))
            missing += 1
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
