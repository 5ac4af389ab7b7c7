"""onnxruntime's optimised form of a model, kept beside it so that the next start is quick.

Opening a session spends most of its time optimising the graph (ISNet here: 0.57 s; from the
saved optimised graph, 0.12 s), and GIMP starts a helper for every run.  The saved graph belongs
to one onnxruntime version and one kind of CPU (its memory layouts follow the CPU's vector width),
so both are in its key, and it is made and used for the CPU provider only.  It is stamped as a
verified model is (see model_fetch.cache), with its own sha256: a file changed since is hashed
again and one that fails is never used; one that onnxruntime cannot open is deleted, and that
model's key then loads as usual.  open_session() is the whole policy.
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
from model_fetch.cache import Stamp, hash_file, recheck, remove_quietly, stamp_path, write_file_atomically, write_stamp

STAMP_KIND = "onnxruntime-optimized"
# What the saved graph is made from: the model's CPU form (fp32.py: fp32 weights, the used output
# alone computed, its number in the identity, the nodes it does not need gone); older graphs were not.
FORM = "fp32-weights,one-output,unneeded-nodes-dropped"
KEEP_OTHER_GRAPHS = 2
# What a killed helper left half-written is cleared after this long (another may be writing now).
ABANDONED_SECONDS = 3600


def cpu_description():
    """What identifies this CPU's instruction set, as text."""
    parts = [platform.machine(), platform.processor(), ",".join(numpy_cpu_features())]
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
                for line in info:
                    if not line.strip():
                        break                   # the first processor's block is enough
                    if line.startswith(("model name", "flags", "Features", "CPU part")):
                        parts.append(line.strip())
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            parts.append(subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                        text=True, timeout=5).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return "\n".join(parts)


def numpy_cpu_features():
    """The instruction sets numpy found at run time (AVX2, AVX512F, NEON, ...) on any system."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__      # numpy 1.x
        except ImportError:
            return []
    return sorted(name for name, present in __cpu_features__.items() if present)


def key(identity):
    """The saved graph's key: the model's verified digest, onnxruntime's version, the CPU."""
    text = "\n".join([identity, FORM, onnxruntime.__version__, cpu_description()])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def saved_graph(folder, identity):
    return Path(folder) / (key(identity) + ".onnx")


def stamp(identity):
    return Stamp(STAMP_KIND, key(identity))


def open_session(model_path, identity, folder, options, open_model, log, open_for_saving=None):
    """The CPU session for a model: from its saved optimised graph, else from the model (saving the graph).

    options() gives fresh SessionOptions; open_model(options) opens the model itself on the CPU,
    raising its caller's load error; open_for_saving(options), if given, opens the form of it whose
    optimised graph is saved (the engine's: fp16 weights turned fp32); log(message) tells the user.
    Returns (session, path opened).
    """
    folder = Path(folder)
    saved = saved_graph(folder, identity)
    if recheck(saved, stamp(identity)):
        graph_options = options()
        graph_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return onnxruntime.InferenceSession(str(saved), sess_options=graph_options,
                                                providers=["CPUExecutionProvider"]), str(saved)
        except Exception as error:  # noqa: BLE001 - any damage: the model itself is still there
            # Not made again: were onnxruntime unable to reopen its own graphs, every start
            # would pay for saving one more.
            log("the saved optimised graph of %s cannot be used (%s); loading the model itself"
                % (Path(model_path).name, _reason(error)))
            forget(saved)
            _mark(saved, ".unsaveable", {})
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass                                    # then unsaveable: the folder is not writable
    if unsaveable(saved, model_path):
        return open_model(options()), str(model_path)
    try:
        work = Path(tempfile.mkdtemp(prefix=".saving-", dir=str(folder)))   # private: nothing planted in it
    except OSError:
        return open_model(options()), str(model_path)
    try:
        made = work / saved.name
        saving = options()
        saving.optimized_model_filepath = str(made)
        try:
            session = (open_for_saving or open_model)(saving)
            if not made.is_file():
                raise OSError("onnxruntime wrote no graph")
            keep(made, saved, identity)
            return session, str(model_path)
        except Exception as error:  # noqa: BLE001 - onnxruntime's (a graph over 2 GB, a full disk) or the file system's
            reason = _reason(error)
    finally:
        shutil.rmtree(str(work), ignore_errors=True)
    session = open_model(options())             # a model that cannot load at all says so here
    _mark(saved, ".save-failed", {"reason": reason, "free": _free_space(folder)})
    log("the optimised graph of %s was not saved (%s); loading the model itself, and saving it is "
        "tried again once %s has more free space" % (Path(model_path).name, reason, folder))
    return session, str(model_path)


def keep(made, path, identity):
    """Moves a graph onnxruntime just saved into place, stamps it, and tidies the folder."""
    content = ("sha256", hash_file(made, "sha256"))
    os.replace(made, path)
    write_stamp(path, stamp(identity), content)
    remove_quietly(path.with_name(path.name + ".save-failed"))
    # Graphs for other onnxruntime versions or CPUs (a cache shared between two setups keeps
    # each its own), but not without end; and what a killed helper left half-written.
    graphs = sorted((other for other in path.parent.glob("*.onnx") if other != path),
                    key=lambda other: other.stat().st_mtime, reverse=True)
    abandoned = [part for part in list(path.parent.glob("*.part")) + list(path.parent.glob(".saving-*"))
                 if time.time() - part.stat().st_mtime > ABANDONED_SECONDS]
    for other in graphs[KEEP_OTHER_GRAPHS:] + abandoned:
        if other.is_dir():
            shutil.rmtree(str(other), ignore_errors=True)
        else:
            forget(other)


def unsaveable(path, model_path):
    """Whether not to try saving this graph: onnxruntime could not open it before, the folder is not
    writable, or saving it failed and the folder has not gained room for it since."""
    if path.with_name(path.name + ".unsaveable").exists() or not os.access(path.parent, os.W_OK):
        return True
    try:
        failed = json.loads(path.with_name(path.name + ".save-failed").read_text(encoding="utf-8"))
        before = int(failed["free"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        needed = os.path.getsize(model_path)
    except OSError:
        needed = 0
    return _free_space(path.parent) < before + needed


def _free_space(folder):
    try:
        return shutil.disk_usage(str(folder)).free
    except OSError:
        return 0


def _mark(path, suffix, record):
    try:
        write_file_atomically(path.with_name(path.name + suffix), json.dumps(record).encode("utf-8"))
    except OSError:
        pass


def _reason(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def forget(path):
    """Deletes a saved (or half-saved) graph and its stamp, as far as the folder allows."""
    for stale in (stamp_path(path), path):
        try:
            remove_quietly(stale)
        except OSError:
            pass
