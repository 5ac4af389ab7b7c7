"""The helper keeps the memory of one image for the next (memory.py), and gives it back when told."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, sys
import numpy as np
from remove_background.helper import memory

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()

def an_image():
    pixels = np.ones(48 << 20, np.uint8)       # a 16 MP photo's pixels, written
    pixels += 1
    return pixels.ctypes.data

kept = memory.keep_freed() if sys.argv[1] == "keep" else False
before = resident()
first = an_image()
freed = resident()
second = an_image()
memory.give_back()
print(json.dumps({"kept": kept, "held": freed - before, "same": first == second,
                  "given_back": freed - resident()}))
"""


def run(mode):
    found = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(found.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_the_next_image_reuses_the_memory_of_the_last_and_it_can_be_given_back():
    plain, kept = run("plain"), run("keep")
    assert not plain["kept"] and plain["held"] < (8 << 20)      # glibc's own way: returned at once
    assert kept["kept"] and kept["held"] > (40 << 20)           # kept for the next image...
    assert kept["same"]                                         # ...which gets the same memory
    assert kept["given_back"] > (40 << 20)                      # and given back when asked
