"""Inside GIMP: the warm helper across runs of Filters > Remove Background (one GIMP start).

RESULTS[case] = {"status", "message", "mask" (file), "mask_digest", "warm" (the warm helpers
answering after the run: [{"pid", "model", ...}])} for the runs, in this order:
  cold            the warm helper off (helper.json "warm_idle_seconds": 0): a private helper
  first, second   two runs with it on
  batch           All Open Images over two images
  killed_between  after the warm helper was SIGKILLed (its socket left behind)
  cancelled       the plug-in killed mid-inference, as Cancel does ("killer": what happened)
  after_cancel    the next run
  while_busy      a run while another client holds the warm helper: a private helper does it
  helper_killed   the warm helper killed mid-inference: the run goes on with a private helper
  after_helper_killed   the next run (a new warm helper)
  other_user      uid 65534 trying the socket ("refused": what it saw, folder closed / open)
  idle            a helper started with a 3 s idle time, and whether it went
  at_quit         the warm helper left running when GIMP quits (outlive.py watches it)
"""

import json
import os
import subprocess
import sys
import time

from support import PARAMS, PROC_ALL, PROC_ONE, RESULTS, Gimp, digest, dump, load, pixels, run_procedure, source
import helper_config

sys.path.insert(0, PARAMS["plugin_dir"])
from remove_background.wire import warm  # the installed plug-in's own

MODEL = "isnet"
CHELSEA = source("tests/fixtures/chelsea.png")
COFFEE = source("tests/fixtures/coffee.png")
KILLER = os.path.join(PARAMS["in_gimp"], "warm_killer.py")
KILL_AT_CPU_SECONDS = 0.6
IDLE = 3
NOBODY = 65534

ATTEMPT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as error:
    print("connect: %s" % type(error).__name__)
    sys.exit()
try:
    s.sendall(b'{"op":"hello"}\\n')
    print("reply: %r" % s.recv(100))
except OSError as error:
    print("reply: %s" % type(error).__name__)
"""


def helpers():
    return [dict(hello["warm"], socket=path) for path, hello in warm.running()]


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_gone(pid, within):
    started = time.monotonic()
    while time.monotonic() - started < within:
        if not alive(pid):
            return round(time.monotonic() - started, 2)
        time.sleep(0.05)
    return None


def masked_run(name, image, **extra):
    layer = image.get_layers()[0]
    status, message, _values = run_procedure(PROC_ONE, image, [layer], model=MODEL)
    result = {"status": status, "message": message}
    mask = layer.get_mask()
    if mask is not None:
        data = pixels(mask, "Y u8")
        result.update(mask=dump(name + ".mask", data), mask_digest=digest(data))
        layer.remove_mask(Gimp.MaskApplyMode.DISCARD)
    result["warm"] = helpers()
    result.update(extra)
    RESULTS[name] = result
    return result


config = helper_config.installed()
image = load(CHELSEA)
RESULTS["size"] = [image.get_width(), image.get_height()]

with helper_config.replaced(dict(config, warm_idle_seconds=0)):
    masked_run("cold", image)

masked_run("first", image)
masked_run("second", image)

# A batch: one connection for both images.
for other in Gimp.get_images():
    if other != image:
        other.delete()
cup = load(COFFEE)
status, message, values = run_procedure(PROC_ALL, model=MODEL)
RESULTS["batch"] = {"status": status, "message": message,
                    "done": values.index(1) if status == "success" else None,
                    "masked": [i.get_layers()[0].get_mask() is not None for i in (image, cup)],
                    "warm": helpers()}
image.get_layers()[0].remove_mask(Gimp.MaskApplyMode.DISCARD)
cup.delete()

# Killed between two runs: its socket stays behind.
victim = helpers()[0]
os.kill(victim["pid"], 9)
gone = wait_gone(victim["pid"], 10)
masked_run("killed_between", image, killed=victim["pid"], killed_gone_after=gone,
           socket_left=os.path.exists(victim["socket"]))

# Cancel: GIMP kills the plug-in in the middle of the model's run.
warm_pid = helpers()[0]["pid"]
report = os.path.join(PARAMS["out"], "cancel.killer.json")
watcher = subprocess.Popen([sys.executable, KILLER, "plug-in", str(warm_pid), str(KILL_AT_CPU_SECONDS),
                            report, PARAMS["plugin_dir"]])
status, message, _values = run_procedure(PROC_ONE, image, [image.get_layers()[0]], model=MODEL)
watcher.wait(timeout=180)
with open(report) as handle:
    RESULTS["cancelled"] = {"status": status, "message": message, "warm_pid": warm_pid,
                            "killer": json.load(handle)}
if image.get_layers()[0].get_mask() is not None:
    image.get_layers()[0].remove_mask(Gimp.MaskApplyMode.DISCARD)
masked_run("after_cancel", image)

# Busy: another client (another GIMP's run) has the warm helper; this run does not wait for it.
HOLD = ("import sys; sys.path.insert(0, sys.argv[1]); from remove_background.wire import client; "
        "held = client.warm_client(client.HelperClient.from_config(sys.argv[1]), start=False); "
        "print(held.pid, flush=True); sys.stdin.readline()")
holder = subprocess.Popen([sys.executable, "-c", HOLD, PARAMS["plugin_dir"]], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
held = int(holder.stdout.readline())
started = time.monotonic()
masked_run("while_busy", image, held=held)
RESULTS["while_busy"]["seconds"] = round(time.monotonic() - started, 2)
holder.stdin.close()
holder.wait(timeout=60)
RESULTS["while_busy"]["warm"] = helpers()

# The warm helper killed in the middle of a run: the run goes on with a helper of its own.
warm_pid = helpers()[0]["pid"]
report = os.path.join(PARAMS["out"], "helper.killer.json")
watcher = subprocess.Popen([sys.executable, KILLER, "helper", str(warm_pid), str(KILL_AT_CPU_SECONDS),
                            report, PARAMS["plugin_dir"]])
masked_run("helper_killed", image, warm_pid=warm_pid)
watcher.wait(timeout=180)
with open(report) as handle:
    RESULTS["helper_killed"]["killer"] = json.load(handle)
masked_run("after_helper_killed", image)          # a new warm helper for the next run

# Another user: kept out by the folder, and refused by the helper were the folder open.
socket_path = helpers()[0]["socket"]


def as_nobody():
    return subprocess.run(["python3", "-c", ATTEMPT, socket_path], capture_output=True, text=True,
                          timeout=60, user=NOBODY, group=NOBODY, extra_groups=[]).stdout.strip()


seen = {"folder_closed": as_nobody()}
# (Its parent, the temporary folder here, is open to everyone already.)
folder = warm.folder()
os.chmod(folder, 0o711)
os.chmod(socket_path, 0o666)
try:
    seen["folder_open"] = as_nobody()
finally:
    os.chmod(folder, 0o700)
    os.chmod(socket_path, 0o600)
with open(warm.log_path(socket_path)) as handle:
    seen["log"] = handle.read()[-2000:]
masked_run("other_user", image, refused=seen)

# The idle time: a helper started with 3 s goes 3 s after its last run.
warm.stop_all()
with helper_config.replaced(dict(config, warm_idle_seconds=IDLE)):
    result = masked_run("idle", image)
pid = result["warm"][0]["pid"] if result["warm"] else None
ended = time.monotonic()
gone = wait_gone(pid, IDLE + 10) if pid else None
result.update(pid=pid, gone_after_run=round(time.monotonic() - ended, 2) if gone is not None else None,
              socket_left=pid is not None and os.path.exists(result["warm"][0]["socket"]))

# One left running for GIMP's quit.
masked_run("at_quit", image)
