"""onnxruntime's optimised form of a model, kept beside it so that the next start is quick.

Opening a session spends most of its time optimising the graph (ISNet here: 0.57 s; from the
saved optimised graph, 0.12 s), and GIMP starts a helper for every run.  The saved graph belongs
to one onnxruntime version and one kind of CPU (its memory layouts follow the CPU's vector width),
so both are in its key, and it is made and used for the CPU provider only.  It is stamped as a
verified model is (size and mtime, see model_fetch.cache): a file changed or cut short is never
used; one that onnxruntime cannot open is deleted, and that model's key then loads as usual.
"""

import hashlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime
from model_fetch.cache import has_valid_stamp, remove_quietly, stamp_path, write_stamp

STAMP_KIND = "onnxruntime-optimized"
KEEP_OTHER_GRAPHS = 2


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
    text = "\n".join([identity, onnxruntime.__version__, cpu_description()])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def saved_graph(folder, identity):
    return Path(folder) / (key(identity) + ".onnx")


def is_usable(path, identity):
    return has_valid_stamp(path, STAMP_KIND, key(identity))


def keep(made, path, identity):
    """Moves a graph onnxruntime just saved into place, stamps it, and tidies the folder."""
    os.replace(made, path)
    write_stamp(path, STAMP_KIND, key(identity))
    # Graphs for other onnxruntime versions or CPUs (a cache shared between two setups keeps
    # each its own), but not without end; and what a killed helper left half-written.
    graphs = sorted((other for other in path.parent.glob("*.onnx") if other != path),
                    key=lambda other: other.stat().st_mtime, reverse=True)
    stale = graphs[KEEP_OTHER_GRAPHS:] + [part for part in path.parent.glob("*.part")
                                          if time.time() - part.stat().st_mtime > 3600]
    for other in stale:
        forget(other)


def unsaveable(path):
    """Whether this graph cannot be saved or used (it failed before; a read-only folder)."""
    return path.with_name(path.name + ".unsaveable").exists() or not os.access(path.parent, os.W_OK)


def mark_unsaveable(path):
    try:
        path.with_name(path.name + ".unsaveable").touch()
    except OSError:
        pass


def forget(path):
    """Deletes a saved (or half-saved) graph and its stamp, as far as the folder allows."""
    for stale in (stamp_path(path), path):
        try:
            remove_quietly(stale)
        except OSError:
            pass
