#!/usr/bin/env python3
"""Installs Remove Background for GIMP: the helper, the GIMP 3 plug-in and a model, then proves it works.

    python3 install.py                everything, ending with a real cut-out of a sample photo
    python3 install.py --check        reports what is installed and whether it works
    python3 install.py --uninstall    removes exactly what install.py installed

Standard library only.  This file must stay parseable by old Pythons (no f-strings, no
keyword-only arguments, no "raise ... from"), so that they print the version message below
instead of a SyntaxError.
"""

from __future__ import print_function

import sys

MIN_PYTHON = (3, 9)


def python_too_old(version_info):
    """The error message for a Python older than MIN_PYTHON, or None."""
    if tuple(version_info[:2]) >= MIN_PYTHON:
        return None
    return ("Python %d.%d is too old: Remove Background needs Python %d.%d or newer.\n"
            "Fix: install a newer Python (your system's packages, or https://www.python.org/downloads/)"
            " and run this file with it, e.g.  python3.12 install.py"
            % (tuple(version_info[:2]) + MIN_PYTHON))


if __name__ == "__main__":
    _TOO_OLD = python_too_old(sys.version_info)
    if _TOO_OLD:
        sys.stderr.write("install.py: error: " + _TOO_OLD + "\n")
        sys.exit(1)

# The rest needs Python >= 3.9.
import argparse  # noqa: E402
import collections  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

CHECKOUT = Path(__file__).resolve().parent
# The plug-in's GIMP side is standard library only too: its process tools serve here as well.
sys.path.insert(0, str(CHECKOUT / "plugin"))
from remove_background.wire.client import Watchdog  # noqa: E402
APP_DIR_NAME = "gimp-remove-background"
PLUGIN_NAME = "remove-background"
FLATPAK_ID = "org.gimp.GIMP"

# What goes into <GIMP plug-ins>/remove-background/: the folder plugin/gimp/ (GIMP's entry, run
# by GIMP) and the GIMP-side package folder plugin/remove_background/wire/ (standard library only),
# with its parent package's __init__.py.  Folders, not a list: a file added there is copied too.
PLUGIN_ENTRY = "remove-background.py"
PLUGIN_FOLDERS = (("plugin/gimp", ""), ("plugin/remove_background/wire", "remove_background/wire"))
PLUGIN_PACKAGE_INIT = ("plugin/remove_background/__init__.py", "remove_background/__init__.py")


def plugin_files(checkout=None):
    """(source in the checkout, destination in the plug-in folder, executable) for every file."""
    checkout = checkout or CHECKOUT
    files = []
    for source_dir, destination_dir in PLUGIN_FOLDERS:
        for path in sorted((checkout / source_dir).rglob("*.py")):
            relative = path.relative_to(checkout / source_dir).as_posix()
            if "__pycache__" in relative:
                continue
            destination = (destination_dir + "/" + relative) if destination_dir else relative
            files.append((path.relative_to(checkout).as_posix(), destination, destination == PLUGIN_ENTRY))
    files.append(PLUGIN_PACKAGE_INIT + (False,))
    return tuple(files)


PLUGIN_FILES = plugin_files()
HELPER_CONFIG = "helper.json"

# Written into the venv: marks it as made by install.py and records what was pip-installed.
VENV_STAMP = "remove-background-install.json"
# Written into the data folder: everything install.py created, for --uninstall.
MANIFEST = "install-manifest.json"

SAMPLE_PHOTO = CHECKOUT / "tests" / "fixtures" / "chelsea.png"
SAMPLE_CUTOUT = "chelsea.nobg.png"

MODELS_ENV = "REMOVE_BACKGROUND_MODELS"
# The import that proves the venv holds a working helper.
HELPER_IMPORTS = ("import remove_background.command.cli, remove_background.helper.serve, model_fetch,"
                  " onnxruntime")

# Lines in pip's output that mean it could not reach the package index.
PIP_NETWORK_SIGNS = (
    "NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "nodename nor servname", "getaddrinfo failed", "ConnectTimeoutError",
    "Connection refused", "Network is unreachable", "ProxyError", "SSLError", "ReadTimeoutError",
    "NameResolutionError", "Max retries exceeded",
)
# Found on every index for every platform: pip not finding them means it reached no index.
PURE_PYTHON_BUILD_REQUIREMENTS = ("setuptools", "wheel")
PIP_NOT_FOUND_SIGNS = ("No matching distribution found", "Could not find a version that satisfies")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_GIMP = 3   # the helper is installed, but no GIMP 3 folder was found for the plug-in


class InstallError(Exception):
    """A failure with a message that says what to do about it."""


# -- where things go ------------------------------------------------------------------------------

def data_dir(system, env, home):
    """The per-user data folder: holds the venv, the manifest and the sample cut-out."""
    if system == "Windows":
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif system == "Darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = env.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".local" / "share"
    return base / APP_DIR_NAME


def gimp_config_roots(system, env, home):
    """(folder holding GIMP/3.x, whether it belongs to GIMP's Flatpak) for this platform."""
    if system == "Windows":
        return [(Path(env.get("APPDATA") or home / "AppData" / "Roaming"), False)]
    if system == "Darwin":
        return [(home / "Library" / "Application Support", False)]
    xdg = env.get("XDG_CONFIG_HOME")
    config = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return [(config, False), (home / ".var" / "app" / FLATPAK_ID / "config", True)]


def find_gimp_dirs(system, env, home):
    """Every GIMP 3 user folder (GIMP/3.0, GIMP/3.2, ...): a list of (folder, is_flatpak)."""
    found = []
    for root, flatpak in gimp_config_roots(system, env, home):
        try:
            children = list((root / "GIMP").iterdir())
        except OSError:
            continue
        versions = [child for child in children
                    if re.match(r"^3\.\d+$", child.name) and child.is_dir()]
        versions.sort(key=lambda path: int(path.name.split(".")[1]))
        found.extend((path, flatpak) for path in versions)
    return found


# What GIMP 3.0 and 3.2 make in a new user folder at their first start (when there is no
# older one to copy): these folders, nothing else.  install.py makes the same for a GIMP that
# is installed but was never started, since GIMP skips its first-start setup when its folder
# exists.
GIMP_FIRST_START_FOLDERS = (
    "brushes", "dynamics", "fonts", "gradients", "palettes", "patterns", "tool-presets", "plug-ins",
    "modules", "interpreters", "environ", "scripts", "templates", "themes", "icons", "tmp", "curves",
    "levels", "filters", "fractalexplorer", "gfig", "gflare", "gimpressionist")
GIMP_PROGRAM = re.compile(r"^gimp(?:-console)?-(3\.\d+)(?:\.exe)?$", re.I)


def gimp_program_folders(system, env, home):
    """(folder that may hold GIMP 3's programs, whether it is GIMP's Flatpak) for this platform."""
    folders = [(Path(entry), False) for entry in env.get("PATH", "").split(os.pathsep) if entry]
    if system == "Windows":
        for base in (env.get("ProgramFiles"), env.get("ProgramW6432"),
                     env.get("LOCALAPPDATA") and os.path.join(env["LOCALAPPDATA"], "Programs")):
            if base:
                folders += [(path / "bin", False) for path in sorted(Path(base).glob("GIMP*"))]
    elif system != "Darwin":
        for base in (home / ".local" / "share" / "flatpak", Path("/var/lib/flatpak")):
            folders.append((base / "app" / FLATPAK_ID / "current" / "active" / "files" / "bin", True))
    return folders


def mac_gimp_versions(home):
    """{"3.N": GIMP.app} for the GIMP 3 apps in /Applications and ~/Applications."""
    import plistlib
    found = {}
    for folder in (Path("/Applications"), home / "Applications"):
        for app in sorted(folder.glob("GIMP*.app")):
            try:
                with open(str(app / "Contents" / "Info.plist"), "rb") as handle:
                    version = str(plistlib.load(handle).get("CFBundleShortVersionString", ""))
            except (OSError, ValueError):
                continue
            match = re.match(r"^(3\.\d+)", version)
            if match:
                found.setdefault(match.group(1), app)
    return found


def find_gimp_programs(system, env, home):
    """Every GIMP 3 installed, by its programs' names (nothing is run): a sorted list of
    (version "3.N", a program of it, whether it is GIMP's Flatpak)."""
    found = {}
    if system == "Darwin":
        found.update(((version, False), app) for version, app in mac_gimp_versions(home).items())
    for folder, flatpak in gimp_program_folders(system, env, home):
        try:
            names = sorted(os.listdir(str(folder)))
        except OSError:
            continue
        for name in names:
            match = GIMP_PROGRAM.match(name)
            if match and os.access(str(folder / name), os.X_OK):
                found.setdefault((match.group(1), flatpak), folder / name)
    return sorted(((version, program, flatpak) for (version, flatpak), program in found.items()),
                  key=lambda item: (item[2], int(item[0].split(".")[1])))


def version_of(folder):
    return int(folder.name.split(".")[1])


# A GIMP 3 installed but never started (no user folder of its version yet), and what install.py
# does about it (plan_gimp_dirs).
Unstarted = collections.namedtuple("Unstarted", "version folder flatpak action older")
MAKE, COPIES_OLDER, START_FIRST = "make", "copies an older 3.x folder", "start first"


def gimp2_folders(root):
    try:
        return sorted(path for path in (root / "GIMP").iterdir() if re.match(r"^2\.\d+$", path.name))
    except OSError:
        return []


def plan_gimp_dirs(system, env, home, programs):
    """What to do for each GIMP 3 installed but never started: a list of Unstarted.

    GIMP's first start copies the newest older user folder it finds (3.0's for 3.2, else 2.10's)
    and skips that when its own folder exists already.  So: beside an older 3.x folder, nothing
    is made: its first start copies that folder, the plug-in with it (COPIES_OLDER).  Beside only
    a GIMP 2 folder, nothing is made either: the user must start it once first, for their
    settings to come over (START_FIRST).  With neither, the folder is made as its first start
    would make it, and the plug-in goes there (MAKE)."""
    plans = []
    existing = find_gimp_dirs(system, env, home)
    for root, flatpak in gimp_config_roots(system, env, home):
        for version in sorted({version for version, _, in_flatpak in programs if in_flatpak == flatpak},
                              key=lambda number: int(number.split(".")[1])):
            folder = root / "GIMP" / version
            if folder.is_dir():
                continue
            older = [path for path, in_flatpak in existing
                     if in_flatpak == flatpak and version_of(path) < int(version.split(".")[1])]
            if older:
                plans.append(Unstarted(version, folder, flatpak, COPIES_OLDER, older[-1]))
            elif gimp2_folders(root):
                plans.append(Unstarted(version, folder, flatpak, START_FIRST, gimp2_folders(root)[-1]))
            else:
                plans.append(Unstarted(version, folder, flatpak, MAKE, None))
    return plans


def is_flatpak_path(path):
    return (os.sep + os.path.join(".var", "app", FLATPAK_ID) + os.sep) in str(path)


def venv_python(venv, system):
    if system == "Windows":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def venv_script(venv, name, system):
    if system == "Windows":
        return venv / "Scripts" / (name + ".exe")
    return venv / "bin" / name


class Places:
    """Every path install.py uses, worked out once from the platform and the options."""

    def __init__(self, args, system=None, env=None, home=None):
        self.system = system or platform.system()
        self.env = os.environ if env is None else env
        self.home = home or Path.home()
        self.data = data_dir(self.system, self.env, self.home)
        self.venv = Path(args.venv).expanduser().absolute() if args.venv else self.data / "venv"
        self.python = venv_python(self.venv, self.system)
        self.manifest = self.data / MANIFEST
        self.sample_cutout = self.data / SAMPLE_CUTOUT
        self.gimp_programs = find_gimp_programs(self.system, self.env, self.home)
        self.gimp_dirs = find_gimp_dirs(self.system, self.env, self.home)
        # GIMPs installed but never started: folders made for them, or left to their first start.
        self.unstarted = plan_gimp_dirs(self.system, self.env, self.home, self.gimp_programs)
        if args.plugins_dir:
            plugins = Path(args.plugins_dir).expanduser().absolute()
            self.new_gimp_dirs = []
            self.targets = [(plugins / PLUGIN_NAME, is_flatpak_path(plugins))]
        else:
            self.new_gimp_dirs = [(gimp.folder, gimp.flatpak) for gimp in self.unstarted if gimp.action == MAKE]
            self.targets = [(folder / "plug-ins" / PLUGIN_NAME, flatpak)
                            for folder, flatpak in sorted(self.gimp_dirs + self.new_gimp_dirs,
                                                          key=lambda item: (item[1], version_of(item[0])))]

    def searched(self):
        """Where GIMP 3 folders were looked for (for messages)."""
        return [str(root / "GIMP" / "3.x") for root, _ in gimp_config_roots(self.system, self.env, self.home)]


# -- output and subprocesses ----------------------------------------------------------------------

class Output:
    def __init__(self, quiet=False):
        self.quiet = quiet

    def step(self, text):
        if not self.quiet:
            print("\n== " + text, flush=True)

    def say(self, text):
        if not self.quiet:
            print(text, flush=True)

    def always(self, text):
        print(text, flush=True)


def venv_folder(command):
    """The folder to run a venv's program in: its venv, where no package can shadow the venv's own
    (run from the checkout, `python -m model_fetch` would import the checkout's model_fetch)."""
    return str(Path(command[0]).parent.parent)


def run_tee(command, echo, timeout=None):
    """Runs a venv's program, echoing its output as it comes when ``echo``; returns (exit code, output).

    After ``timeout`` seconds the program is killed (a hung helper must not hang the installer).
    """
    lines = []
    try:
        process = subprocess.Popen([str(part) for part in command], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, universal_newlines=True, cwd=venv_folder(command),
                                   encoding="utf-8", errors="replace")
    except OSError as error:
        return None, "cannot start %s: %s" % (command[0], error)
    with Watchdog(timeout or None, process):
        for line in process.stdout:
            lines.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        process.stdout.close()
        code = process.wait()
    return code, "".join(lines)


def run_quietly(command, timeout=120):
    """Runs a venv's program, capturing its output; returns (exit code or None if it cannot start, output)."""
    try:
        done = subprocess.run([str(part) for part in command], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, cwd=venv_folder(command),
                              encoding="utf-8", errors="replace", timeout=timeout)
    except OSError as error:
        return None, str(error)
    except subprocess.TimeoutExpired:
        return None, "no answer after %d seconds" % timeout
    return done.returncode, done.stdout


def python_works(python):
    return python.exists() and run_quietly([python, "-c", "import sys"], timeout=60)[0] == 0


# -- the checkout ---------------------------------------------------------------------------------

def pyproject_text():
    try:
        return (CHECKOUT / "pyproject.toml").read_text(encoding="utf-8")
    except OSError as error:
        raise InstallError("cannot read %s (%s).\nFix: run install.py from a complete checkout of the "
                           "project." % (CHECKOUT / "pyproject.toml", error))


def simple_toml(text):
    """The tables of a TOML text with their string values and inline tables of strings: all install.py
    reads of pyproject.toml, for Pythons before 3.11 (no tomllib)."""
    data = table = {}
    for line in text.splitlines():
        line = line.strip()
        header = re.match(r"^\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$", line)
        if header:
            table = data
            for part in header.group(1).split("."):
                table = table.setdefault(part, {})
            continue
        value = re.match(r'^"?([A-Za-z0-9_.-]+)"?\s*=\s*"([^"]*)"\s*(#.*)?$', line)
        if value:
            table[value.group(1)] = value.group(2)
            continue
        inline = re.match(r'^"?([A-Za-z0-9_.-]+)"?\s*=\s*\{([^}]*)\}\s*(#.*)?$', line)
        if inline:
            table[inline.group(1)] = dict(re.findall(r'"?([A-Za-z0-9_.-]+)"?\s*=\s*"([^"]*)"', inline.group(2)))
    return data


def pyproject():
    """pyproject.toml, parsed (by tomllib where Python has it)."""
    text = pyproject_text()
    try:
        import tomllib
    except ImportError:         # Python 3.9 and 3.10
        return simple_toml(text)
    try:
        return tomllib.loads(text)
    except ValueError as error:     # tomllib.TOMLDecodeError
        raise InstallError("%s is not valid TOML (%s).\nFix: run install.py from a complete checkout of the "
                           "project." % (CHECKOUT / "pyproject.toml", error))


def project_version():
    version = pyproject().get("project", {}).get("version")
    if not version:
        raise InstallError("pyproject.toml declares no version.")
    return version


def package_files():
    """pyproject.toml and what the wheel is built from: the package folders pyproject.toml declares
    (its package-dir), README.md and LICENSE."""
    package_dir = pyproject().get("tool", {}).get("setuptools", {}).get("package-dir")
    if not package_dir:
        raise InstallError("pyproject.toml has no [tool.setuptools] package-dir; install.py reads the "
                           "package folders from it.")
    files = [CHECKOUT / name for name in ("pyproject.toml", "README.md", "LICENSE")
             if (CHECKOUT / name).is_file()]
    for folder in package_dir.values():
        for path in sorted((CHECKOUT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    return files


def source_hash(files):
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(CHECKOUT).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def load_model_fetch():
    """The checkout's model_fetch (standard library only), imported into this process."""
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    sys.dont_write_bytecode = True
    try:
        import model_fetch
    except ImportError as error:
        raise InstallError("cannot import model_fetch from %s (%s).\nFix: run install.py from a complete "
                           "checkout of the project." % (CHECKOUT, error))
    return model_fetch


# -- the manifest: everything install.py created --------------------------------------------------

class Manifest:
    def __init__(self, path):
        self.path = path
        self.venvs, self.files, self.dirs = [], [], []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        self.venvs = list(data.get("venvs", []))
        self.files = list(data.get("files", []))
        self.dirs = list(data.get("dirs", []))

    def exists(self):
        return self.path.exists()

    def add(self, kind, path):
        entries = getattr(self, kind)
        if str(path) not in entries:
            entries.append(str(path))

    def save(self):
        make_dirs(self.path.parent, self)
        data = {"venvs": self.venvs, "files": self.files, "dirs": self.dirs}
        write_text_if_changed(self.path, json.dumps(data, indent=2) + "\n")


def make_dirs(path, manifest):
    """Creates ``path`` and any missing parents, recording each one it creates."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir()
        manifest.add("dirs", folder)


def write_text_if_changed(path, text):
    return write_bytes_if_changed(path, text.encode("utf-8"))


def write_bytes_if_changed(path, data):
    """Writes the file unless it already holds exactly ``data``; returns whether it wrote."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    temporary = path.with_name(path.name + ".part")
    temporary.write_bytes(data)
    os.replace(str(temporary), str(path))
    return True


# -- install --------------------------------------------------------------------------------------

def venv_support_problem():
    """Why this Python cannot make a venv with pip in it, with the fix; or None."""
    package = "python3-venv (or python%d.%d-venv)" % sys.version_info[:2]
    try:
        import venv  # noqa: F401
    except ImportError:
        return ("this Python (%s) has no venv module.\nFix: on Debian/Ubuntu: sudo apt install %s; "
                "elsewhere install Python from https://www.python.org/downloads/ and run install.py with it."
                % (sys.executable, package))
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        return ("this Python (%s) has the venv module but not ensurepip, so it cannot put pip into a venv."
                "\nFix: on Debian/Ubuntu: sudo apt install %s; elsewhere install Python from "
                "https://www.python.org/downloads/ and run install.py with it." % (sys.executable, package))
    return None


def read_stamp(venv):
    try:
        return json.loads((venv / VENV_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_stamp(venv, **values):
    stamp = {"installed_by": "install.py"}
    stamp.update(values)
    write_text_if_changed(venv / VENV_STAMP, json.dumps(stamp, indent=2) + "\n")


def prepare_venv(places, manifest, out):
    """Makes the helper's venv, or reuses a working one install.py made before."""
    venv = places.venv
    clear = False
    if venv.exists() and (not venv.is_dir() or any(venv.iterdir())):
        if read_stamp(venv) is None:
            raise InstallError("%s already exists and was not made by install.py; it is left alone.\n"
                               "Fix: choose a new or empty folder with --venv DIR." % venv)
        if python_works(places.python):
            out.say("Using the helper's venv at %s" % venv)
            return
        out.say("The venv at %s does not start any more (was its Python removed?); making it again." % venv)
        clear = True
    problem = venv_support_problem()
    if problem:
        raise InstallError(problem)
    import venv as venv_module
    make_dirs(venv.parent, manifest)
    manifest.add("venvs", venv)
    manifest.save()
    out.say("Creating the helper's venv at %s (Python %s)" % (venv, platform.python_version()))
    try:
        venv_module.EnvBuilder(with_pip=True, clear=clear, symlinks=(os.name != "nt")).create(str(venv))
    except subprocess.CalledProcessError as error:
        raise InstallError("creating the venv at %s failed while putting pip into it (%s).\nFix: on "
                           "Debian/Ubuntu: sudo apt install python3-venv; then run install.py again."
                           % (venv, error))
    except OSError as error:
        raise InstallError("cannot create the venv at %s: %s\nFix: choose a writable folder with --venv DIR."
                           % (venv, error))
    if not python_works(places.python):
        raise InstallError("the new venv's Python %s does not start.\nFix: delete %s and run install.py "
                           "again, or use another Python to run install.py." % (places.python, venv))
    write_stamp(venv)


def stage_sources(files, folder):
    """Copies what the wheel is built from to ``folder``, so pip builds there and not in the checkout."""
    for path in files:
        destination = folder / path.relative_to(CHECKOUT)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(str(path), str(destination))


def pip_install(places, args, out):
    """pip-installs this checkout into the venv, unless the same sources are installed already."""
    files = package_files()
    digest = source_hash(files)
    version = project_version()
    stamp = read_stamp(places.venv) or {}
    if stamp.get("source_hash") == digest:
        code, _ = run_quietly([places.python, "-c", HELPER_IMPORTS])
        if code == 0:
            out.say("The helper %s is installed and its sources are unchanged: skipping pip." % version)
            return
        out.say("The helper's sources are unchanged but its packages do not import: reinstalling.")
    command = [places.python, "-m", "pip", "install", "--disable-pip-version-check"]
    if args.quiet:
        command.append("--quiet")
    if args.find_links:
        command += ["--no-index", "--find-links", str(Path(args.find_links).expanduser().absolute())]
    with tempfile.TemporaryDirectory(prefix="remove-background-build-") as staging:
        stage_sources(files, Path(staging))
        out.say("Installing the helper %s and its packages (onnxruntime, numpy, pillow, onnx) with pip" % version)
        code, output = run_tee(command + [staging], echo=not args.quiet)
    if code != 0:
        raise InstallError(pip_failure(code, output, args))
    code, output = run_quietly([places.python, "-c", HELPER_IMPORTS])
    if code != 0:
        raise InstallError("pip installed the helper, but it does not import:\n%s\nFix: delete %s and run "
                           "install.py again." % (output.strip(), places.venv))
    write_stamp(places.venv, source_hash=digest, version=version)


def pip_failure(code, output, args):
    """The message for a failed pip run: the likely cause, pip's own words under --quiet, the fix."""
    errors = [line.strip() for line in output.splitlines() if line.strip().startswith("ERROR:")]
    tail = "\n" + "\n".join(errors[-5:]) if args.quiet and errors else ""
    python = "%d.%d" % sys.version_info[:2]
    missing = re.findall(r"No matching distribution found for (\S+)", output)
    unreachable = any(sign in output for sign in PIP_NETWORK_SIGNS) or \
        any(re.split(r"[<>=!~;\[]", requirement)[0].lower() in PURE_PYTHON_BUILD_REQUIREMENTS
            for requirement in missing)
    offline = ("Offline route: on a machine with network, the same OS and Python %s, run\n"
               "    python3 -m pip download --dest wheels setuptools wheel %s\n"
               "copy the wheels folder here and run\n"
               "    python3 install.py --find-links wheels" % (python, CHECKOUT))
    if unreachable and not args.find_links:
        return ("pip could not reach the package index (no network, or a proxy/firewall in the way), so "
                "the helper's packages could not be downloaded.%s\nFix: connect to the network (a proxy: set "
                "HTTPS_PROXY; a private index: pip's own configuration or PIP_INDEX_URL is used) and run "
                "install.py again.\n%s" % (tail, offline))
    if missing or any(sign in output for sign in PIP_NOT_FOUND_SIGNS):
        where = "in %s" % args.find_links if args.find_links else "on the package index"
        return ("pip found no version of %s %s that installs on this machine (Python %s, %s %s).%s\n"
                "Fix: run install.py with a Python version these packages support (onnxruntime publishes "
                "wheels for recent CPython releases on x86-64 and arm64), or fill the wheels folder as "
                "follows.\n%s" % (", ".join(missing) or "the helper's packages", where, python,
                                   platform.system(), platform.machine(), tail, offline))
    return ("pip failed (exit status %s)%s.%s\nFix: read pip's message above; after fixing it run install.py "
            "again." % (code, "" if args.quiet else "; its output is above", tail))


def install_plugin(target, flatpak, places, version, manifest):
    """Copies the plug-in into ``target`` (<plug-ins>/remove-background); returns how many files changed."""
    changed = 0
    for source, name, executable in PLUGIN_FILES:
        destination = target / name
        make_dirs(destination.parent, manifest)
        data = (CHECKOUT / source).read_bytes()
        manifest.add("files", destination)
        changed += write_bytes_if_changed(destination, data)
        if executable and places.system != "Windows":
            mode = destination.stat().st_mode
            destination.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    config = {"python": str(places.python), "version": version}
    if flatpak:
        # GIMP's Flatpak cannot see the host's venv: the client runs it through flatpak-spawn --host.
        config["host_spawn"] = True
    if places.env.get(MODELS_ENV):
        # GIMP does not get this shell's variables: tell the helper where the models are.
        config["env"] = {MODELS_ENV: str(Path(places.env[MODELS_ENV]).expanduser().absolute())}
    manifest.add("files", target / HELPER_CONFIG)
    changed += write_text_if_changed(target / HELPER_CONFIG, json.dumps(config, indent=2) + "\n")
    manifest.save()
    return changed


def gimp_name(version, flatpak):
    return "GIMP %s%s" % (version, " (Flatpak)" if flatpak else "")


def prepare_unstarted_gimps(places, out):
    """Makes the user folder of each GIMP installed but never started, as its first start would
    (GIMP's folders, not install.py's: --uninstall leaves them), or says which older folder its
    first start will copy."""
    for gimp in places.unstarted:
        name = gimp_name(gimp.version, gimp.flatpak)
        if gimp.action == COPIES_OLDER:
            out.say("%s is installed but has not been started yet: its first start copies %s, the plug-in "
                    "with it." % (name, gimp.older))
        elif gimp.action == START_FIRST:
            out.always("%s is installed but has not been started yet; its first start brings your settings over "
                       "from %s, which it would not do if install.py made its folder. Start %s once, then run "
                       "install.py again to put the plug-in into it." % (name, gimp.older, name))
        else:
            try:
                for folder in GIMP_FIRST_START_FOLDERS:
                    (gimp.folder / folder).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InstallError("cannot make %s's folder %s: %s\nFix: start %s once (it makes it), then run "
                                   "install.py again." % (name, gimp.folder, error, name))
            out.say("%s is installed but has not been started yet: made its folder %s as its first start "
                    "would, for the plug-in to go there." % (name, gimp.folder))


def install_plugins(places, version, manifest, out):
    for target, flatpak in places.targets:
        try:
            changed = install_plugin(target, flatpak, places, version, manifest)
        except OSError as error:
            raise InstallError("cannot write the plug-in into %s: %s\nFix: make that folder writable, or "
                               "name another with --plugins-dir DIR." % (target, error))
        state = "%d file(s) written" % changed if changed else "already up to date"
        out.say("Plug-in in %s%s: %s" % (target, " (Flatpak)" if flatpak else "", state))


def choose_model(args):
    """The model to fetch and use: --model, else the registry's default; None with --no-model."""
    if args.no_model:
        return None
    model_fetch = load_model_fetch()
    try:
        if args.model:
            model_fetch.get(args.model)
            return args.model
        return model_fetch.default_model()
    except model_fetch.FetchError as error:
        names = ", ".join(model.name for model in model_fetch.models())
        raise InstallError("%s\nFix: choose one of: %s (--model NAME), or skip the model with --no-model."
                           % (error, names))


def fetch_model(name, places, args, out):
    out.say("Fetching the model %s (%s -m model_fetch fetch %s)" % (name, places.python, name))
    code, output = run_tee([places.python, "-m", "model_fetch", "fetch", name], echo=not args.quiet)
    if code == 0:
        return
    model = load_model_fetch().get(name)
    if model.derived_from:
        raise InstallError(
            "could not make the model %s from %s (model_fetch's message is %s). The helper and the plug-in are "
            "installed; only this model is missing.\n"
            "Fix: once the cause above is fixed, run\n"
            "    %s -m model_fetch fetch %s\n"
            "(it fetches %s if needed, then derives %s on this machine), or use --model %s."
            % (name, model.derived_from, "above" if not args.quiet else ":\n" + output.strip(), places.python,
               name, model.derived_from, name, model.derived_from))
    raise InstallError(
        "could not fetch the model %s (model_fetch's message is %s). The helper and the plug-in are installed;"
        " only the model is missing.\n"
        "Fix: if this machine has no network, get the file %s (%d MB) on another machine with\n"
        "    python3 -m model_fetch fetch %s      (then: python3 -m model_fetch path %s shows where it is)\n"
        "copy it here and run\n"
        "    %s -m model_fetch import %s FILE\n"
        "then run install.py again (or use --model NAME for another model, --no-model to skip)."
        % (name, "above" if not args.quiet else ":\n" + output.strip(), model.file,
           (model.size or model.approx_size or 0) // 1000000,
           name, name, places.python, name))


def prove(name, places, manifest, args, out):
    """Cuts out the sample photo with the installed helper; returns (cut-out path, seconds)."""
    script = venv_script(places.venv, PLUGIN_NAME, places.system)
    command = [script, SAMPLE_PHOTO, "-o", places.sample_cutout, "--model", name]
    out.say("Cutting out the sample photo %s with %s: starting the helper, loading the model (the first time "
            "it also saves an optimised copy of it), then the photo; usually 5 to 30 s..."
            % (SAMPLE_PHOTO.name, name))
    make_dirs(places.data, manifest)
    manifest.add("files", places.sample_cutout)
    manifest.save()
    started = time.monotonic()
    code, output = run_tee(command, echo=not args.quiet, timeout=600)
    seconds = time.monotonic() - started
    if code != 0 or not places.sample_cutout.is_file():
        raise InstallError("the helper could not cut out the sample photo (%s; exit status %s)%s.\n"
                           "Fix: run  python3 install.py --check  to see what is wrong." % (
                               " ".join(str(part) for part in command), code,
                               ":\n" + output.strip() if args.quiet else ", its output is above"))
    return places.sample_cutout, seconds


def install(args, places, out):
    version = project_version()
    for source, _, _ in PLUGIN_FILES:
        if not (CHECKOUT / source).is_file():
            raise InstallError("%s is missing.\nFix: run install.py from a complete checkout of the project."
                               % (CHECKOUT / source))
    model = choose_model(args)
    out.always("Remove Background for GIMP %s: installing from %s" % (version, CHECKOUT))
    manifest = Manifest(places.manifest)

    out.step("The helper (a Python venv with onnxruntime, numpy, pillow and onnx)")
    prepare_venv(places, manifest, out)
    pip_install(places, args, out)
    stop_warm_helpers(places, out)

    out.step("The GIMP plug-in")
    if not args.plugins_dir:
        prepare_unstarted_gimps(places, out)
    if places.targets:
        install_plugins(places, version, manifest, out)
    else:
        out.say("No GIMP 3 folder found (looked in %s)." % ", ".join(places.searched()))

    out.step("The model")
    installed_model = None
    if model:
        fetch_model(model, places, args, out)
        installed_model = model
    else:
        out.say("Skipped (--no-model).")
        model_fetch = load_model_fetch()
        installed = [m.name for m in model_fetch.models() if model_fetch.is_installed(m.name)]
        installed_model = installed[0] if installed else None

    out.step("Proof: a real cut-out")
    if installed_model:
        cutout, seconds = prove(installed_model, places, manifest, args, out)
        out.always("The cut-out of the sample photo is at %s (took %.1f s with the model %s)."
                   % (cutout, seconds, installed_model))
    else:
        out.always("Skipped the proof: --no-model was given and no model is installed, so there is nothing to "
                   "cut out with. Fetch one with  %s -m model_fetch fetch NAME  (or run install.py without "
                   "--no-model)." % places.python)
    manifest.save()
    return summarize(places, out, installed_model)


def tool_lines(places):
    """Where the helper and the command are, and how to run the command (it is not on PATH)."""
    script = venv_script(places.venv, PLUGIN_NAME, places.system)
    return ["  helper:  %s" % places.python,
            "  command: %s" % script,
            "           run it by that path:  %s photo.jpg   (the same: %s -m remove_background photo.jpg)"
            % (script, places.python)]


def summarize(places, out, model):
    out.always("")
    if not places.targets:
        out.always("The helper is installed, but no GIMP 3 user folder was found, so the plug-in is NOT installed.")
        for line in tool_lines(places):
            out.always(line)
        out.always(
            "Looked in: %s\n"
            "Fix: if GIMP 3 is installed where install.py does not look, start it once (it creates its folder) and "
            "run install.py again, or name GIMP's plug-ins folder (GIMP: Edit > Preferences > Folders > Plug-ins) "
            "with\n"
            "    python3 install.py --plugins-dir DIR\n"
            "The plug-in must end up as DIR/%s/%s next to its %s."
            % (", ".join(places.searched()), PLUGIN_NAME, PLUGIN_ENTRY, HELPER_CONFIG))
        return EXIT_NO_GIMP
    out.always("Done. Remove Background for GIMP is installed:")
    for line in tool_lines(places):
        out.always(line)
    for target, flatpak in places.targets:
        out.always("  plug-in: %s%s" % (target, " (GIMP's Flatpak)" if flatpak else ""))
    for gimp in places.unstarted:
        if gimp.action == COPIES_OLDER and any(target.parent.parent == gimp.older for target, _ in places.targets):
            out.always("           (%s, not started yet, copies it from there at its first start)"
                       % gimp_name(gimp.version, gimp.flatpak))
    if model:
        out.always("  model:   %s" % model)
    out.always("To use it: restart GIMP (start it, if it was not running), open a photo, then choose "
               "Filters > Remove Background...")
    if any(flatpak for _, flatpak in places.targets):
        out.always("GIMP's Flatpak runs the helper on the host through flatpak-spawn; allow that once with:\n"
                   "    flatpak override --user --talk-name=org.freedesktop.Flatpak %s" % FLATPAK_ID)
    out.always("Check it: python3 install.py --check    Remove it: python3 install.py --uninstall")
    return EXIT_OK


# -- the warm helper ------------------------------------------------------------------------------

def load_warm():
    """The checkout's wire/warm.py (standard library only): finds and stops this user's warm helpers
    (the helper that stays loaded between GIMP runs); None where there are none (Windows)."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(CHECKOUT / "plugin"))
    try:
        for name in [name for name in sys.modules if name.split(".")[0] == "remove_background"]:
            del sys.modules[name]
        from remove_background.wire import warm
    finally:
        sys.path.remove(str(CHECKOUT / "plugin"))
    return warm if warm.supported() else None


def stop_warm_helpers(places, out):
    """Stops the warm helpers running this venv's Python (their code or model is about to change)."""
    warm = load_warm()
    if warm is None:
        return
    for pid, model in warm.stop_all(executable=str(places.python)):
        out.say("Stopped the warm helper (pid %s, model %s)." % (pid, model))


def report_warm_helpers(places, out):
    warm = load_warm()
    if warm is None:
        out.always("  none on %s: each GIMP run starts its own helper" % platform.system())
        return
    running = warm.running()
    for _path, hello in running:
        status = hello["warm"]
        model = status.get("model")
        if model:
            model = "%s (%s threads)" % (model, status.get("threads"))
        out.always("  running: pid %s, model %s, idle %s of %s, for GIMP pid %s%s" % (
            status.get("pid"), model or "none loaded", duration(status.get("idle_seconds")),
            duration(status.get("idle_timeout")) if status.get("idle_timeout") else "no limit",
            status.get("gimp_pid"), "" if status.get("executable") == str(places.python)
            else " (helper %s)" % status.get("executable")))
    if not running:
        out.always("  none running (GIMP's next Remove Background starts one; it stays %s after the last run,"
                   " %s=0 turns it off)" % (duration(warm.idle_timeout()), warm.IDLE_VARIABLE))


def duration(seconds):
    seconds = int(round(float(seconds or 0)))
    return "%d min %02d s" % divmod(seconds, 60) if seconds >= 60 else "%d s" % seconds


# -- check ----------------------------------------------------------------------------------------

def helper_hello(plugin_dir, config):
    """Asks the helper named in the plug-in's helper.json for its versions, through the plug-in's own
    client, as GIMP would (but here on the host, so never through flatpak-spawn)."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(plugin_dir))
    try:
        for name in [name for name in sys.modules if name.split(".")[0] == "remove_background"]:
            del sys.modules[name]
        from remove_background.wire import client
        command = [config["python"], "-m", client.SERVE_MODULE]
        with client.HelperClient(command, env=config.get("env"), host_spawn=False) as helper:
            return helper.hello()
    finally:
        sys.path.remove(str(plugin_dir))


def check_plugin(target, places, problems, out):
    """Reports on one installed plug-in folder; returns its helper.json (or None)."""
    missing = [name for _, name, _ in PLUGIN_FILES + (("", HELPER_CONFIG, False),)
               if not (target / name).is_file()]
    if missing:
        out.always("  %s: NOT installed (missing %s)" % (target, ", ".join(missing)))
        problems.append("the plug-in is missing from %s: run install.py" % target)
        return None
    stale = [name for source, name, _ in PLUGIN_FILES
             if (target / name).read_bytes() != (CHECKOUT / source).read_bytes()]
    not_executable = places.system != "Windows" and not os.access(str(target / PLUGIN_ENTRY), os.X_OK)
    try:
        config = json.loads((target / HELPER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        config = {}
        problems.append("%s is unreadable (%s): run install.py" % (target / HELPER_CONFIG, error))
    state = "installed"
    if stale:
        state += ", OUT OF DATE (%s differ from this checkout)" % ", ".join(stale)
        problems.append("the plug-in in %s is out of date: run install.py" % target)
    if not_executable:
        state += ", NOT executable"
        problems.append("%s is not executable: run install.py" % (target / PLUGIN_ENTRY))
    out.always("  %s: %s; helper %s" % (target, state, config.get("python")))
    return config


def check(args, places, out):
    problems = []
    out.always("Remove Background for GIMP %s (checkout %s)" % (project_version(), CHECKOUT))
    out.always("Python running install.py: %s %s on %s %s" % (
        sys.executable, platform.python_version(), platform.system(), platform.machine()))

    out.always("GIMP 3 installed:")
    if not places.gimp_programs:
        out.always("  none found by its programs (gimp-3.N, gimp-console-3.N) on PATH%s" % (
            "" if places.system == "Windows" else " or in GIMP's Flatpak"))
    for version, program, flatpak in places.gimp_programs:
        out.always("  %s: %s" % (gimp_name(version, flatpak), program))

    out.always("GIMP 3 folders:")
    targets = list(places.targets)
    if args.plugins_dir:
        out.always("  (only --plugins-dir %s)" % args.plugins_dir)
    else:
        for folder, flatpak in places.gimp_dirs:
            out.always("  %s%s" % (folder, " (Flatpak)" if flatpak else ""))
        for gimp in places.unstarted:
            what = {MAKE: "install.py makes it", COPIES_OLDER: "its first start copies %s" % gimp.older,
                    START_FIRST: "start it once (it brings %s over), then run install.py" % gimp.older}
            out.always("  %s: not started yet, so no %s; %s" % (gimp_name(gimp.version, gimp.flatpak), gimp.folder,
                                                               what[gimp.action]))
            if gimp.action == START_FIRST:
                problems.append("%s has not been started yet: start it once, then run install.py"
                                % gimp_name(gimp.version, gimp.flatpak))
        for path in Manifest(places.manifest).files:
            target = Path(path).parent
            if Path(path).name == HELPER_CONFIG and all(target != known for known, _ in targets):
                targets.append((target, is_flatpak_path(target)))
        if not places.gimp_dirs and not places.new_gimp_dirs:
            out.always("  none found (looked in %s)" % ", ".join(places.searched()))
            if not targets:
                problems.append("no GIMP 3 folder found: install GIMP 3 (or start it once), then run install.py "
                                "(or use --plugins-dir)")

    out.always("Plug-in:")
    if not targets:
        out.always("  not installed anywhere")
    hellos = {}
    for target, _ in targets:
        config = check_plugin(target, places, problems, out)
        python = config and config.get("python")
        if not python or python in hellos:
            continue
        try:
            hellos[python] = helper_hello(target, config)
        except Exception as error:  # noqa: BLE001 - the client's HelperError, or anything the helper did wrong
            hellos[python] = None
            problems.append("the helper %s does not answer: %s" % (python, error))

    out.always("Helper:")
    stamp = read_stamp(places.venv)
    if not python_works(places.python):
        out.always("  no working venv at %s" % places.venv)
        problems.append("the helper's venv %s is missing or broken: run install.py" % places.venv)
    elif not stamp or stamp.get("source_hash") != source_hash(package_files()):
        out.always("  %s (installed from other sources than this checkout's)" % places.python)
        problems.append("the helper in %s is out of date: run install.py" % places.venv)
    else:
        out.always("  %s (up to date with this checkout)" % places.python)
    if python_works(places.python) and str(places.python) not in hellos:
        hellos[str(places.python)] = None
        code, output = run_quietly([places.python, "-c", "import platform, onnxruntime as o, "
                                    "remove_background.helper as r; "
                                    "print(r.version(), platform.python_version(), o.__version__, "
                                    "' '.join(o.get_available_providers()))"])
        if code == 0:
            helper, python, runtime, providers = output.split(None, 3)
            hellos[str(places.python)] = {"helper": helper, "python": python, "onnxruntime": runtime,
                                          "providers": providers.split()}
        else:
            problems.append("the helper's packages do not import: %s" % output.strip())
    for python, hello in sorted(hellos.items()):
        if hello:
            out.always("  %s: helper %s, Python %s, onnxruntime %s, providers %s" % (
                python, hello.get("helper"), hello.get("python", "?"), hello.get("onnxruntime"),
                ", ".join(hello.get("providers", []))))
    if any("AzureExecutionProvider" in (hello or {}).get("providers", []) for hello in hellos.values()):
        out.always("  (AzureExecutionProvider comes with every onnxruntime: it would send a model's input to an "
                   "Azure endpoint only if given one and its key, which the helper never does; it runs on the "
                   "GPU or CPU providers only, and nothing is uploaded.)")

    out.always("Warm helper:")
    report_warm_helpers(places, out)

    out.always("Models:")
    model_fetch = load_model_fetch()
    try:
        usable = check_models(model_fetch, problems, out, places.python if python_works(places.python) else None)
    except model_fetch.FetchError as error:
        usable = 0
        problems.append("model_fetch cannot list the models: %s" % error)
    if not usable:
        problems.append("no model is installed: run install.py (or  python3 -m model_fetch fetch NAME)")

    out.always("")
    if problems:
        out.always("Problems:")
        for problem in problems:
            out.always("  - " + problem)
        return EXIT_ERROR
    out.always("Everything is in place.")
    return EXIT_OK


# Run in the helper's Python: the mask of a photo, as its lowest and highest value.
PROBE_SCRIPT = """import json, sys
from remove_background.command import cli
from remove_background.helper import engine
runner = engine.load(sys.argv[1], file=sys.argv[3] or None)
mask = runner.mask(cli.pixels_of(cli.load_image(sys.argv[2])))
print(json.dumps([int(mask.min()), int(mask.max())]))
"""
# A mask of the sample photo spanning fewer levels than this is "constant": a model that loads
# but does not see (damaged weights, the wrong file); a working one spans 0 to 255 on it.
CONSTANT_SPREAD = 8


def probe_mask(python, name, file=None, photo=SAMPLE_PHOTO):
    """Runs the model on the CC0 sample photo in the helper's Python.

    Returns (lowest, highest) mask value, or a string saying why it could not run."""
    code, output = run_quietly([python, "-c", PROBE_SCRIPT, name, photo, file or ""], timeout=600)
    lines = output.strip().splitlines()
    if code == 0 and lines:
        try:
            low, high = json.loads(lines[-1])
            return int(low), int(high)
        except (ValueError, TypeError):
            pass
    return (lines[-1] if lines else "exit status %s" % code)


def check_models(model_fetch, problems, out, python=None):
    """Reports each model; returns how many are installed and verified (and, with the helper's
    ``python``, give a mask that is not constant on the sample photo)."""
    out.always("  folder: %s" % model_fetch.cache_dir())
    usable = 0
    for model in model_fetch.models():
        if not model_fetch.is_installed(model.name):
            out.always("  %-22s not installed" % model.name)
            continue
        if model_fetch.verify(model.name):
            probe = (probe_mask(python, model.name, model_fetch.installed_path(model.name))
                     if python and SAMPLE_PHOTO.is_file() else None)
            if isinstance(probe, str):
                out.always("  %-22s installed, verified, does NOT run: %s" % (model.name, probe))
                problems.append("the model %s does not run on the sample photo (%s): run  python3 -m model_fetch "
                                "remove %s  then  python3 -m model_fetch fetch %s" % (model.name, probe, model.name,
                                                                                    model.name))
            elif probe and probe[1] - probe[0] < CONSTANT_SPREAD:
                out.always("  %-22s installed, verified, SUSPECT: its mask of %s is constant (%d to %d)"
                           % (model.name, SAMPLE_PHOTO.name, probe[0], probe[1]))
                problems.append("the model %s gives a constant mask on the sample photo: it may be damaged or the "
                                "wrong file. Fetch it again:  python3 -m model_fetch remove %s  then  python3 -m "
                                "model_fetch fetch %s" % (model.name, model.name, model.name))
            else:
                usable += 1
                out.always("  %-22s installed, verified%s" % (
                    model.name, ", mask of %s from %d to %d" % ((SAMPLE_PHOTO.name,) + probe) if probe else ""))
        else:
            out.always("  %-22s installed, FAILS verification" % model.name)
            problems.append("the model %s fails verification: run  python3 -m model_fetch fetch %s" % (
                model.name, model.name))
    return usable


# -- uninstall ------------------------------------------------------------------------------------

def purge_models(out):
    model_fetch = load_model_fetch()
    folder = model_fetch.cache_dir()
    try:
        for model in model_fetch.models():
            model_fetch.remove(model.name)
            # model_fetch keeps a lock file beside each model, even after removing it.
            lock = folder / (model.file + ".lock")
            if lock.exists():
                lock.unlink()
    except (model_fetch.FetchError, OSError) as error:
        raise InstallError("cannot remove the models from %s: %s\nFix: delete that folder by hand." % (folder, error))
    # The model folder, and its parent when that is this project's own (the default layout).
    for empty in (folder, folder.parent) if folder.parent.name == APP_DIR_NAME else (folder,):
        try:
            empty.rmdir()
        except OSError:
            break
    out.always("Removed the models from %s" % folder)


def test_cache_dir(env, home):
    """Where the test command (tests/run.py, tests/gimp/gimp3.py) keeps its GIMP roots and venvs."""
    base = env.get("XDG_CACHE_HOME")
    return Path(base if base and os.path.isabs(base) else home / ".cache") / APP_DIR_NAME


def test_caches(places):
    """What the test command left in its cache folder: all of it but the models."""
    folder = test_cache_dir(places.env, places.home)
    try:
        return folder, sorted(path for path in folder.iterdir() if path.name != "models")
    except OSError:
        return folder, []


def purge_test_caches(places, out):
    folder, entries = test_caches(places)
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(str(path))
        else:
            path.unlink()
    if entries:
        out.always("Removed the test command's caches from %s (%s)" % (folder, ", ".join(p.name for p in entries)))


def mention_caches(args, places, out):
    """What --uninstall leaves that others made: the test command's caches, onnxruntime's files."""
    folder, entries = test_caches(places)
    if entries and not args.purge_test_caches:
        out.always("The test command's caches were kept in %s: %s (a GIMP root takes about 1.6 GB; add "
                   "--purge-test-caches to remove them)." % (folder, ", ".join(p.name for p in entries)))
    onnxruntime_files = places.home / ".cache" / "Microsoft" / "DeveloperTools"
    if onnxruntime_files.exists():
        out.always("onnxruntime keeps a device id and a small database in %s (other Microsoft tools use that "
                   "folder too); delete it by hand if nothing else needs it." % onnxruntime_files)


def uninstall(args, places, out):
    manifest = Manifest(places.manifest)
    if args.purge_test_caches:
        purge_test_caches(places, out)
    if args.purge_models:
        purge_models(out)
    if not manifest.exists():
        out.always("Nothing to uninstall: install.py has not installed anything here (no %s)." % places.manifest)
        mention_caches(args, places, out)
        return EXIT_OK
    stop_warm_helpers(places, out)
    removed = 0
    for path in [Path(entry) for entry in manifest.files]:
        if path.is_file():
            path.unlink()
            removed += 1
    for venv in [Path(entry) for entry in manifest.venvs]:
        # Only a folder install.py made and marked is deleted whole.
        if (venv / VENV_STAMP).is_file() or (venv / "pyvenv.cfg").is_file():
            shutil.rmtree(str(venv))
            removed += 1
            out.always("Removed the helper's venv %s" % venv)
    places.manifest.unlink()
    # Folders install.py created, deepest first, if nothing else lives in them now.  Python's own
    # bytecode caches inside the plug-in's package folder are removed with it.
    for folder in sorted((Path(entry) for entry in manifest.dirs), key=lambda p: len(p.parts), reverse=True):
        shutil.rmtree(str(folder / "__pycache__"), ignore_errors=True)
        try:
            folder.rmdir()
        except OSError:
            if folder.exists() and folder.name in (APP_DIR_NAME, PLUGIN_NAME, "remove_background", "wire"):
                out.always("Kept %s: it holds files install.py did not put there." % folder)
    for path in manifest.files:
        if Path(path).name == HELPER_CONFIG:
            out.always("Removed the plug-in from %s" % Path(path).parent)
    if not args.purge_models:
        out.always("The models were kept (add --purge-models to remove them too).")
    mention_caches(args, places, out)
    out.always("Uninstalled.")
    return EXIT_OK


# -- command line ---------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install Remove Background for GIMP: the helper's venv, the GIMP 3 plug-in and a model, "
                    "then cut out a sample photo to prove it works.  Running it again updates what changed.",
        epilog="Exit status: 0 done; 1 an error (the message says how to fix it); 3 the helper is installed "
               "but no GIMP 3 folder was found for the plug-in.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="report what is installed and whether it works")
    action.add_argument("--uninstall", action="store_true", help="remove everything install.py installed")
    parser.add_argument("--purge-models", action="store_true", help="with --uninstall: remove the models too")
    parser.add_argument("--purge-test-caches", action="store_true",
                        help="with --uninstall: remove the test command's GIMP roots and venvs too")
    parser.add_argument("--venv", metavar="DIR", help="the helper's venv (default: in the per-user data folder)")
    parser.add_argument("--plugins-dir", metavar="DIR",
                        help="install the plug-in into this GIMP plug-ins folder only (default: every GIMP 3 "
                             "user folder found)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="NAME", help="the model to fetch and use (default: the registry's)")
    model.add_argument("--no-model", action="store_true", help="fetch no model (and skip the proof if none is "
                                                               "installed)")
    parser.add_argument("--find-links", metavar="DIR",
                        help="install the packages from this folder of wheels only (offline; see pip download)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the outcome and errors")
    args = parser.parse_args(argv)
    for flag, given in (("--purge-models", args.purge_models), ("--purge-test-caches", args.purge_test_caches)):
        if given and not args.uninstall:
            parser.error("%s goes with --uninstall" % flag)
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Output(args.quiet)
    places = Places(args)
    try:
        if args.check:
            return check(args, places, out)
        if args.uninstall:
            return uninstall(args, places, out)
        return install(args, places, out)
    except InstallError as error:
        sys.stdout.flush()
        sys.stderr.write("\ninstall.py: error: %s\n" % error)
        return EXIT_ERROR
    except OSError as error:
        # A disk that is full or a folder that is not writable, somewhere not foreseen above.
        sys.stdout.flush()
        sys.stderr.write("\ninstall.py: error: %s\nFix: free space or make that folder writable, then run "
                         "install.py again.\n" % error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("\ninstall.py: interrupted; run it again to finish.\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
