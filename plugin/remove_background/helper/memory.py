"""Freed memory kept for the helper's next image (glibc, so Linux; elsewhere nothing changes).

An image costs a few hundred MB of arrays (the pixels as received, their resized copies, the
mask), freed at its end.  glibc hands blocks that big straight back to the system, and the next
image gets fresh pages, one fault per 4 KiB: 20 000 on a 12 MP photo, 25-35 ms of a warm click
(measured with and without).  keep_freed() has it keep them; the warm helper calls give_back()
once it has been idle for a while, so that it does not sit on them between sessions.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP = 1 << 30          # bytes: blocks up to this size from the heap, and this much kept free


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None     # musl and others: their allocator as it is


def keep_freed():
    """Returns whether freed memory is kept from now on."""
    libc = _glibc()
    if libc is None:
        return False
    # Older glibc caps the mmap threshold at 32 MiB; the pixels of big photos are then mapped anew.
    mapped = libc.mallopt(M_MMAP_THRESHOLD, KEEP) or libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    return bool(mapped and libc.mallopt(M_TRIM_THRESHOLD, KEEP))


def give_back():
    """Returns the freed memory kept to the system."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
