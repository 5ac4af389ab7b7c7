"""Kills a running helper, or the plug-in that started it, as a crash or a cancel would.

    python3 killer.py helper|plug-in CPU_SECONDS OUT.json PLUG_IN_DIR

Waits for a `remove_background.helper.serve` process started by the plug-in in PLUG_IN_DIR (no
other GIMP's) that has used CPU_SECONDS of CPU time, then SIGKILLs it ("helper") or its
parent, the plug-in, as GIMP does when the user cancels ("plug-in").  Then waits for the
helper to be gone and writes what happened to OUT.json.

CPU time, not age, tells the helper at work from the one that only lists the models (it
imports no numpy or onnxruntime: a few hundredths of a second) whatever the machine's speed:
on a fast CPU the working helper's whole life is shorter than a second and a half.
"""

import json
import os
import signal
import sys
import time

GIVE_UP = 120.0


def command_line(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def helpers(plugin_dir):
    """The helpers whose parent is the plug-in installed in plugin_dir."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or b"remove_background.helper.serve" not in command_line(int(entry)):
            continue
        info = stat(int(entry))
        if info and any(part.startswith(plugin_dir) for part in command_line(info[1])):
            found.append(int(entry))
    return found


def stat(pid):
    """(state letter, parent pid, CPU seconds used), or None once the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat(5) (utime, stime), counted after the command's closing ")".
    return fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid):
    info = stat(pid)
    return info is not None and info[0] not in ("Z", "X")


def main(what, cpu_seconds, out, plugin_dir):
    report = {"what": what, "killed": None}
    started = time.monotonic()
    target = None
    while time.monotonic() - started < GIVE_UP and target is None:
        for pid in helpers(plugin_dir.encode()):
            info = stat(pid)
            if info and info[0] not in ("Z", "X") and info[2] >= cpu_seconds:
                target = pid
                break
        time.sleep(0.02)
    if target is None:
        report["error"] = "no helper used %s s of CPU" % cpu_seconds
    else:
        _state, parent, used = stat(target)
        victim = target if what == "helper" else parent
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        report.update(killed=victim, helper=target, plug_in=parent, helper_cpu_seconds=used)
        while alive(target) and time.monotonic() - killed < GIVE_UP:
            time.sleep(0.05)
        report["helper_gone"] = not alive(target)
        report["helper_gone_after"] = round(time.monotonic() - killed, 2)
    with open(out, "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4])
