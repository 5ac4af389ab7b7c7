"""Models made on this machine from a downloaded one (isnet-int8: isnet quantised to int8).

A derived model has no pin in the registry: what it is made from is its key, computed here from
the source's pin, the registry's recipe, onnxruntime's version, the calibration photos shipped in
calibration/ (CC0 and public-domain, see its README) and the kind of int8 instructions this CPU
has.  The key goes into the file's stamp, so a change to any of them makes the model
not-installed until it is derived again.  The file's own sha256 is kept in the stamp too, for
`verify`.  Standard library only; the quantisation itself is the helper's
(remove_background.helper.int8), imported only to derive, in the helper's Python.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

from .errors import FetchError

CALIBRATION = Path(__file__).resolve().parent / "calibration"
STAMP_KIND = "derived"


def key(model, source) -> str:
    """The stamp's digest for ``model`` (derived) made from ``source`` (its registry entry) here."""
    text = json.dumps({"source": list(source.pin), "recipe": model.derive, "onnxruntime": onnxruntime_version(),
                       "calibration": calibration_digest(), "cpu": cpu_int8()[0]}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def calibration_photos():
    return sorted(path for path in CALIBRATION.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))


@functools.lru_cache(maxsize=None)
def calibration_digest() -> str:
    digest = hashlib.sha256()
    for path in calibration_photos():
        digest.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def onnxruntime_version():
    """The version of the onnxruntime this Python would import, read from its files (importing
    it, or importlib.metadata, costs a helper's start tenths of a second); None without one."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(list(spec.submodule_search_locations)[0])
    try:
        for line in (package / "__init__.py").read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.match(r"""__version__\s*=\s*["']([^"']+)["']""", line)
            if match:
                return match.group(1)
    except OSError:
        pass
    for info in package.parent.glob("onnxruntime*.dist-info"):      # onnxruntime_gpu-1.20.1.dist-info
        return info.name[:-len(".dist-info")].rsplit("-", 1)[-1]
    return None


@functools.lru_cache(maxsize=None)
def cpu_int8():
    """(kind, sentence): whether onnxruntime's int8 kernels are fast on this CPU.

    Its int8 convolutions need 8-bit dot products to beat float: VNNI (AVX512-VNNI, AVX-VNNI)
    on x86, the dot-product extension on ARM.  With AVX2 alone they multiply in pairs into
    16 bits, slower, and can saturate with full 8-bit weights, so 7-bit weights are used there.
    """
    flags = _cpu_flags()
    machine = platform.machine().lower()
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx512vnni", "avxvnni"}:
        return "vnni", "this CPU has VNNI 8-bit dot products: int8 models run fast"
    if flags & {"asimddp", "dotprod"}:
        return "arm-dotprod", "this CPU has ARM's dot-product instructions: int8 models run fast"
    if machine in ("arm64", "aarch64") or machine.startswith("arm"):
        return "arm", ("this ARM CPU has no dot-product instructions: onnxruntime's int8 kernels are slow here, "
                       "int8 models may be no faster than isnet")
    if "avx2" in flags:
        return "avx2", ("this CPU has AVX2 but no VNNI: onnxruntime's int8 kernels are slower here (measured on a "
                        "VNNI CPU only) and 7-bit weights are used against saturation; compare with isnet")
    if flags:
        return "x86-old", ("this CPU has neither VNNI nor AVX2: int8 models are slow here, use isnet")
    return "unknown", "could not tell whether this CPU has fast 8-bit instructions (VNNI, AVX2 or ARM dot product)"


def _cpu_flags():
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
                for line in info:
                    if line.startswith(("flags", "Features")):
                        return set(line.split(":", 1)[1].split())
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            found = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_DotProd", "hw.optional.avx2_0"],
                                   capture_output=True, text=True, timeout=5).stdout.split()
        except (OSError, subprocess.SubprocessError):
            found = []
        names = ["dotprod", "avx2"] if platform.machine() == "arm64" else ["avx2"]
        return {name for name, value in zip(names, found[-len(names):]) if value == "1"}
    elif sys.platform == "win32":
        try:
            import ctypes
            present = ctypes.windll.kernel32.IsProcessorFeaturePresent
            # PF_AVX2_INSTRUCTIONS_AVAILABLE 40, PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE 43
            return {name for name, feature in (("avx2", 40), ("dotprod", 43)) if present(feature)}
        except (AttributeError, OSError):
            pass
    return set()


def derive(model, source_path, target, progress=None):
    """Makes ``target`` from the verified ``source_path`` by ``model``'s recipe; returns the seconds."""
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
        from remove_background.helper import int8
    except ImportError as error:
        raise FetchError("%s is made on this machine from %s, which needs the helper's Python (numpy, onnxruntime "
                         "and onnx; here: %s). Run it as  <the helper venv's python> -m model_fetch fetch %s"
                         % (model.name, model.derived_from, error, model.name)) from None
    kind, note = cpu_int8()

    def say(step, done=None, total=None):
        if progress:
            progress("%s: %s%s" % (model.name, step, " (%d of %d)" % (done + 1, total) if total else ""), None, None)

    say(note)
    try:
        return int8.derive(source_path, target, model.preprocess, recipe=model.derive, photos=calibration_photos(),
                           reduce_range=kind in ("avx2", "x86-old"), progress=say)
    except (OSError, MemoryError) as error:
        raise FetchError("could not make %s from %s in %s: %s" % (model.name, model.derived_from,
                                                                  Path(target).parent, error)) from None

