"""Kills the plug-in while the warm helper is inferring for it, as GIMP does on Cancel, or
the warm helper itself.

    python3 warm_killer.py plug-in|helper WARM_PID CPU_SECONDS OUT.json PLUG_IN_DIR

Waits until the warm helper WARM_PID has used CPU_SECONDS more CPU time than when this started
(it is then inside the model: the photo's preparation takes a small part of that), then
SIGKILLs the plug-in in PLUG_IN_DIR that is running ("plug-in") and measures how much CPU the
helper still uses over the second after: about none when it has abandoned the request, seconds
when it carries on.  Or SIGKILLs the warm helper ("helper").
"""

import json
import os
import signal
import sys
import time

from killer import command_line, stat

GIVE_UP = 120.0
SETTLE = 0.5          # after the kill, before measuring
MEASURE = 1.0


def plug_ins(plugin_dir):
    entry = os.path.join(plugin_dir, "remove-background.py").encode()
    return [int(pid) for pid in os.listdir("/proc")
            if pid.isdigit() and entry in command_line(int(pid))]


def cpu(pid):
    info = stat(pid)
    return info[2] if info else None


def main(what, warm_pid, cpu_seconds, out, plugin_dir):
    report = {"killed": None}
    start = cpu(warm_pid)
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline and cpu(warm_pid) is not None and cpu(warm_pid) - start < cpu_seconds:
        time.sleep(0.01)
    victims = plug_ins(plugin_dir)
    if cpu(warm_pid) is None or cpu(warm_pid) - start < cpu_seconds or not victims:
        report["error"] = "the warm helper never worked for a plug-in (%s)" % victims
    elif what == "helper":
        os.kill(warm_pid, signal.SIGKILL)
        report.update(killed=[warm_pid], helper_cpu_at_kill=round(cpu(warm_pid) - start, 2))
    else:
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        report.update(killed=victims, helper_cpu_at_kill=round(cpu(warm_pid) - start, 2))
        time.sleep(SETTLE)
        before = cpu(warm_pid)
        time.sleep(MEASURE)
        after = cpu(warm_pid)
        report["helper_alive"] = after is not None
        if after is not None:
            report["helper_cpu_in_the_second_after"] = round(after - before, 2)
    with open(out, "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5])
