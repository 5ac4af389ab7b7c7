"""A second user for the tests that check who may talk to the warm helper (root only)."""

import os
import subprocess
import sys

from needs import need

NOBODY = 65534
AS_NOBODY = {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def need_root():
    need(hasattr(os, "geteuid") and os.geteuid() == 0, "needs root to run a process as another user")


def python_for_anyone():
    """A Python that uid NOBODY may run (the test venv's may sit in root's home)."""
    need_root()
    for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            done = subprocess.run([python, "-c", "pass"], capture_output=True, timeout=30, **AS_NOBODY)
        except OSError:
            continue
        if done.returncode == 0:
            return python
    need(False, "no Python that uid %d may run" % NOBODY)
