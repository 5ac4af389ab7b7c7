"""The cache folder: where it is, the per-model lock, hashing, and the stamp that records a verified file.

A file's stamp records what it is (a Stamp: kind and value, e.g. its pin) and what a plain `touch -r`
cannot fake (size, mtime, ctime, inode and device): checking it costs a stat and a small read.  A
file whose stamp no longer matches is hashed again on the spot (recheck) before anything uses it.
"""

from __future__ import annotations

import hashlib
import json
import errno
import os
import stat
import sys
import tempfile
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


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


class Stamp(tuple):
    """What a verified file is: (kind, value).

    A model's kind is its pin's hash algorithm and the value its digest; a derived file's kind
    names what made it (e.g. "onnxruntime-optimized") and the value its key.
    """

    def __new__(cls, kind, value):
        return super().__new__(cls, (kind, value))

    @property
    def kind(self):
        return self[0]

    @property
    def value(self):
        return self[1]


def file_identity(st) -> dict:
    """What a plain `touch -r` cannot put back: size, mtime, ctime (any change of the file's data or
    times moves it to now) and the inode and device (a file replaced by another), where the OS has them."""
    identity = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}
    if st.st_ino:
        identity["inode"] = st.st_ino
    if st.st_dev:
        identity["device"] = st.st_dev
    return identity


def write_stamp(path: Path, stamp, content=None, notes=None):
    """Records that path is ``stamp`` as it is now; ``content`` = (algorithm, digest) of its bytes
    (by default the stamp itself, for a model whose kind is its hash algorithm); ``notes``, a dict,
    is kept in it for people (how a derived model was made)."""
    stamp = Stamp(*stamp)
    content = content or stamp
    st = os.stat(path)
    record = dict(file_identity(st), kind=stamp.kind, value=stamp.value, content=[content[0], content[1]])
    if notes:
        record["notes"] = notes
    # Also as version 0.1 read a stamp (size, mtime, algorithm, digest): a cache shared with it still works.
    record.update(algorithm=stamp.kind, digest=stamp.value)
    write_file_atomically(stamp_path(path), json.dumps(record).encode("utf-8"))


def read_stamp(path: Path):
    """The stamp's record, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads(stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def stamp_names(path: Path, stamp) -> bool:
    """Whether the stamp says path is ``stamp``, whatever happened to the file since."""
    return _names(read_stamp(path), stamp)


def _names(record, stamp):
    if record is None:
        return False
    if "kind" not in record:                 # a stamp of version 0.1 (size and mtime only)
        return [record.get("algorithm"), record.get("digest")] == list(Stamp(*stamp))
    return [record.get("kind"), record.get("value")] == list(Stamp(*stamp))


def has_valid_stamp(path: Path, stamp) -> bool:
    """Whether path is ``stamp`` and has not changed since it was stamped (a stat, no hashing)."""
    record = read_stamp(path)
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (_names(record, stamp) and "kind" in record
            and all(record.get(key) == value for key, value in file_identity(st).items()))


def recheck(path: Path, stamp, progress=None, label=None):
    """Whether path still is ``stamp``: at once if its stamp matches; else its bytes are hashed again
    against the stamp's content digest (the file may only have been copied or touched), and a good
    file is stamped anew (when the folder allows).  False for a file that fails."""
    if has_valid_stamp(path, stamp):
        return True
    record = read_stamp(path)
    if not _names(record, stamp):
        return False
    content = record.get("content") or [record.get("algorithm"), record.get("digest")]
    if not (isinstance(content, list) and len(content) == 2 and content[0] in ("sha256", "md5")):
        return False
    try:
        good = hash_file(path, content[0], progress, label) == content[1]
    except OSError:
        return False
    if good:
        try:
            write_stamp(path, stamp, content, record.get("notes"))
        except OSError:
            pass                                # a read-only cache: checked again next time
    return good


def write_file_atomically(path: Path, data: bytes):
    """Writes path through a new private temporary file beside it (never a planted link) and a rename."""
    descriptor, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o644)        # readable as a file made with open() is
        os.replace(temporary, path)
    except BaseException:
        remove_quietly(temporary)
        raise


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def open_part(path: Path, append=False):
    """Opens a partial-download file for writing, never through a link or into a device or FIFO.

    ``append`` keeps what a regular file there already holds (a download resuming); anything
    else at that name (a link, a FIFO, a folder's entry of another kind) is removed first, and a
    new file is created exclusively.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and (not append or not stat.S_ISREG(st.st_mode)):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(path))
        os.unlink(path)
        st = None
    if st is None:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o644)
    else:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW | _BINARY)
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev):
            os.close(descriptor)                # swapped between the look and the open
            raise OSError(errno.EEXIST, "the partial file was replaced while opening it", str(path))
    return os.fdopen(descriptor, "ab" if append else "wb")


def regular_size(path) -> int:
    """The size of a regular file at path (not following links); 0 for anything else or nothing."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


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
