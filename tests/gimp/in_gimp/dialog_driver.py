"""Works GIMP's dialog from outside, as a user would: xdotool keys, ImageMagick screenshots.

    python3 dialog_driver.py OUT_FOLDER

Waits for the "Remove Background" dialog, screenshots it, picks Output: Selection with the
keyboard (Alt+P focuses the Output list, Down picks its next entry), screenshots it again and
presses OK (Alt+O).  Writes what it did to OUT_FOLDER/driver.json.
"""

import json
import os
import subprocess
import sys
import time

TITLE = "^Remove Background$"


def xdotool(*arguments):
    return subprocess.run(["xdotool"] + list(arguments), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30)


def main(out):
    report = {"window": None}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = xdotool("search", "--name", TITLE).stdout.split()
        if found:
            report["window"] = window = found[0].decode()
            break
        time.sleep(0.3)
    else:
        report["error"] = "the dialog did not appear"
    if report["window"]:
        time.sleep(1.0)   # let it finish drawing
        xdotool("windowfocus", "--sync", window)
        subprocess.run(["import", "-window", window, os.path.join(out, "dialog.png")], timeout=30)
        xdotool("key", "alt+p")
        time.sleep(0.3)
        xdotool("key", "Down")
        time.sleep(0.5)
        subprocess.run(["import", "-window", window, os.path.join(out, "dialog-selection.png")],
                       timeout=30)
        xdotool("key", "alt+o")
    with open(os.path.join(out, "driver.json"), "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1])
