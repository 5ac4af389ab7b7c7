"""Spreading row-wise numpy and Pillow work over the cores (both release the GIL)."""

import os
from concurrent.futures import ThreadPoolExecutor


def max_threads():
    """More threads than this only cost (5000 kept the helper from seeing end of file for 90 s)."""
    return 4 * (os.cpu_count() or 1)


def for_row_blocks(rows, work, workers, min_rows=32):
    """Calls work(start, stop) for consecutive blocks covering rows 0..rows, in parallel.

    Each block's result goes to its own rows, so the order of completion does not matter.
    """
    blocks = max(1, min(workers, rows // min_rows))
    if blocks == 1:
        work(0, rows)
        return
    edges = [rows * index // blocks for index in range(blocks + 1)]
    with ThreadPoolExecutor(max_workers=blocks) as pool:
        for future in [pool.submit(work, start, stop) for start, stop in zip(edges, edges[1:])]:
            future.result()             # re-raises a block's error here


def for_each(items, work, workers):
    """Calls work(item) for every item, ``workers`` at a time, each worker taking the next item
    when it is done (for items of very different cost, such as the bands of an outline)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()             # re-raises an item's error here
