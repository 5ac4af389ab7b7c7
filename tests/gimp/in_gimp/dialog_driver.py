"""Works GIMP's dialog from outside, as a user would: xdotool keys, ImageMagick screenshots.

    python3 dialog_driver.py OUT_FOLDER

Waits for the "Remove Background" dialog, screenshots it, picks Output: Selection with the
keyboard (Alt+P focuses the Output list, Down picks its next entry), turns Refine edges off
(Alt+E), presses Alt+T and types 3 (which would set Threads, were it in the dialog: it must not
be), screenshots it again and presses OK (Alt+O).  Writes what it did to OUT_FOLDER/driver.json.

No fixed pause decides anything: it waits for the dialog to stop changing on the screen
before the first key, and for the Down key to show before OK, however slow the machine.
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


def screen(window):
    return subprocess.run(["import", "-window", window, "png:-"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, timeout=30).stdout


def wait_until_still(window, seconds=60):
    """Until two screenshots half a second apart are the same (the dialog is drawn)."""
    last, deadline = screen(window), time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = screen(window)
        if now == last:
            return now
        last = now
    return last


def wait_until_changed(window, before, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if screen(window) != before:
            return True
        time.sleep(0.2)
    return False


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
        xdotool("windowfocus", "--sync", window)
        before = wait_until_still(window)
        with open(os.path.join(out, "dialog.png"), "wb") as handle:
            handle.write(before)
        xdotool("key", "alt+p")
        xdotool("key", "Down")
        report["choice_shown"] = wait_until_changed(window, before)
        xdotool("key", "alt+e")
        xdotool("key", "alt+t")
        xdotool("key", "3")
        with open(os.path.join(out, "dialog-selection.png"), "wb") as handle:
            handle.write(wait_until_still(window))
        xdotool("key", "alt+o")
    with open(os.path.join(out, "driver.json"), "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1])
