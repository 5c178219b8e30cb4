"""Peak memory of a block of work, for `gpact bench`: allocator peak on CUDA, resident-set peak on CPU.

On CPU torch keeps no allocation statistics, so a thread samples the process's resident set (Linux
/proc/self/statm) every millisecond and keeps the highest value above the level at the start: memory
the work touched, to within what the C allocator keeps cached. Elsewhere the figure is None.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_STATM = "/proc/self/statm"


@dataclass
class Peak:
    bytes: int | None = None  # peak growth during the block; None where it cannot be measured


def _resident() -> int | None:
    try:
        with open(_STATM) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Peak]:
    """Measure the block's peak memory above its start into the yielded Peak (set when the block ends)."""
    peak = Peak()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield peak
        torch.cuda.synchronize(device)
        peak.bytes = torch.cuda.max_memory_allocated(device) - start
        return
    start = _resident()
    if start is None:
        yield peak
        return
    high, done = [start], threading.Event()

    def sample() -> None:
        while not done.is_set():
            high[0] = max(high[0], _resident() or 0)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.bytes = max(high[0], _resident() or 0) - start
