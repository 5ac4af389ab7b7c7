"""Runs GIMP as a child, then tells whether any warm helper outlives it, and for how long.

    python3 outlive.py OUT.json GIMP_COMMAND...

In the test root GIMP would be the first process of its PID namespace, whose end kills every
process left in it: a warm helper would seem to exit with GIMP whatever it did.  Here this
script is that first process and GIMP an ordinary one, as on a desktop.
"""

import json
import os
import subprocess
import sys
import time

from killer import command_line, stat

WATCH = 10.0
WARM_MODULE = b"remove_background.helper.warm"


def warm_helpers():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and WARM_MODULE in command_line(int(entry)):
            info = stat(int(entry))
            if info and info[0] not in ("Z", "X"):
                found.append(int(entry))
    return found


def reap():
    # Orphans become this process's children: collect the ones that have exited.
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def main(out, command):
    gimp = subprocess.Popen(command)
    code = gimp.wait()
    ended = time.monotonic()
    reap()
    report = {"gimp_exit_status": code, "left_when_gimp_quit": warm_helpers(), "gone_after": None}
    while time.monotonic() - ended < WATCH:
        reap()
        if not warm_helpers():
            report["gone_after"] = round(time.monotonic() - ended, 2)
            break
        time.sleep(0.05)
    report["still_running"] = warm_helpers()
    with open(out, "w") as handle:
        json.dump(report, handle)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
