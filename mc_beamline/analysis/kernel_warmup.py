"""Numba's one-time start-up, in the background while the inputs are being prepared.

The first call of any numba-compiled function in a process loads numba's implementation
registries and the extensions other installed packages register with it (awkward, sparse,
...): about half a second of CPU even when every kernel comes from numba's on-disk cache.
Started as soon as a command knows it will analyse frames, that work overlaps with what
the command does meanwhile (geometry maps, masks, the first batch of frames, whose
decompression runs outside the GIL); the first kernel call then only loads its own
cached code. Numba's compiler lock serialises the two, so a kernel called while the
warm-up is still running simply waits for it.
"""

from __future__ import annotations

import threading

import numba


@numba.njit(cache=True)
def _first_numba_call(x: int) -> int:
    """Any cached nopython function: its first call is what initialises numba."""
    return x + 1


def start_kernel_warmup() -> threading.Thread:
    """Initialise numba in a daemon thread (named ``mc-numba-warmup``) and return it."""
    thread = threading.Thread(target=_first_numba_call, args=(0,), name="mc-numba-warmup", daemon=True)
    thread.start()
    return thread
