"""The cache folder: where it is, the per-model lock, hashing, and the stamp that records a verified file.

A model counts as installed only when its stamp matches the file's current size and mtime and the
registry's current pin, so checking costs a stat and a small read, never a rehash; a file changed
since it was verified is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import FetchError

ENV_VAR = "REMOVE_BACKGROUND_MODELS"
_BLOCK = 1 << 20


def default_cache_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gimp-remove-background" / "models"


def new_hash(algorithm):
    if algorithm == "md5":
        # md5 only because rembg pins its files that way; not a security use (FIPS builds refuse it otherwise).
        return hashlib.md5(usedforsecurity=False)
    return hashlib.new(algorithm)


def file_digest(path, algorithm, progress=None, label=None):
    """The hash object of a file's contents, reading it in blocks with progress."""
    digest = new_hash(algorithm)
    label = label or "verify %s" % Path(path).name
    total = os.path.getsize(path)
    done = 0
    if progress:
        progress(label, 0, total)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
            done += len(block)
            if progress:
                progress(label, done, total)
    return digest


def hash_file(path, algorithm, progress=None, label=None) -> str:
    return file_digest(path, algorithm, progress, label).hexdigest()


def derived_dir(model_path: Path) -> Path:
    """The folder for files made from a model (onnxruntime's optimised graph); removed with it."""
    return model_path.with_name(model_path.name + ".derived")


def stamp_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".verified")


def write_stamp(model_path: Path, algorithm, digest):
    st = model_path.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "algorithm": algorithm, "digest": digest}
    tmp = model_path.with_name(model_path.name + ".verified.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, stamp_path(model_path))


def has_valid_stamp(model_path: Path, algorithm, digest) -> bool:
    try:
        record = json.loads(stamp_path(model_path).read_text(encoding="utf-8"))
        st = model_path.stat()
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict)
            and record.get("size") == st.st_size
            and record.get("mtime_ns") == st.st_mtime_ns
            and record.get("algorithm") == algorithm
            and record.get("digest") == digest)


def remove_quietly(*paths):
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@contextmanager
def locked(lock_path: Path, on_wait=None):
    """Holds an exclusive lock on lock_path; if another process holds it, calls on_wait() then blocks.

    The OS drops the lock when its holder dies, so a crashed fetch never blocks the next one.
    The lock file itself stays: deleting it would let two processes lock two different files.
    """
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a+b")
    except OSError as exc:
        raise FetchError("cannot use the model folder %s: %s" % (lock_path.parent, exc)) from None
    with f:
        if sys.platform == "win32":
            import msvcrt
            waited = False
            while True:
                try:
                    f.seek(0)
                    msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    if not waited and on_wait:
                        on_wait()
                    waited = True
                    time.sleep(0.2)
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait()
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
