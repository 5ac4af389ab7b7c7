"""Inside GIMP's real window (under Xvfb): keys pressed in an image's window, as a user would."""

import re
import subprocess
import time

from support import Gimp, state


def xdotool(*arguments):
    return subprocess.run(["xdotool"] + list(arguments), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, timeout=30).stdout.decode()


def undo_once_in_the_window(image, observe=state):
    """Presses Ctrl+Z once in the image's window; returns {"window": found?, "after":
    observe(image) once it changed (or after a minute), "windows": the titles seen if not found}."""
    changed = observe(image)
    Gimp.displays_flush()
    # The window's title names the image by its ID: "[Untitled]-ID.VIEW (...) – GIMP".
    title = re.compile(r"-%d\.[0-9]+ \(" % image.get_id())
    window, names = None, []
    deadline = time.monotonic() + 60
    while window is None and time.monotonic() < deadline:
        names = [(found, xdotool("getwindowname", found).strip())
                 for found in xdotool("search", "--name", ".").split()]
        window = next((found for found, name in names if title.search(name)), None)
        time.sleep(0.3)
    report = {"window": window is not None}
    if window is None:   # what there is instead, for the failure message
        report["windows"] = [name for _found, name in names]
    else:
        xdotool("windowfocus", "--sync", window)
        time.sleep(1.0)
        xdotool("key", "--clearmodifiers", "ctrl+z")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and observe(image) == changed:
            time.sleep(0.2)
        time.sleep(1.0)   # anything more the one key press did has arrived by now
    report["after"] = observe(image)
    return report
