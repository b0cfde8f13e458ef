"""Compiled gather of ring pixels into (ring, radial slice, bin) sums, in one pass per frame.

Regrouping a frame reads only the few per cent of its pixels that lie on the analysed rings.
Those pixels come in short runs along detector rows (≈1500 runs for two rings on a 1 Mpx
detector), so reading them is bound by memory latency, not bandwidth: each run starts on a
cache line the hardware prefetcher could not predict. :class:`RingGather` therefore visits the
pixels in memory order and issues a software prefetch for the cache line a few dozen lines
ahead, while it adds each pixel to its segment and counts bad pixels in the same loop (no
temporary copy of the gathered values). On a frame that is not in the CPU caches this halves
the time of a NumPy ``take`` + ``add.reduceat`` (see ``benchmarks/bench_xcca.py``).

Bad pixels are recognised exactly as :func:`mc_beamline.analysis.polar.bad_value_mask` does:
the dtype maximum of unsigned integers (2³²-1, the Eiger gap value, for uint32), negative
values or 2³²-1 in signed integers, non-finite values or values ≥ 2³²-1 in floats. Their
value is not added; they are counted per segment instead.

Sums are accumulated in float64, pixel by pixel in increasing memory address within each
segment (the order NumPy's ``add.reduceat`` would use on the address-sorted pixels), so
integer counts are exact up to 2⁵³ per segment.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

GAP_VALUE_U32 = 2**32 - 1
CACHE_LINE_BYTES = 64
PREFETCH_DISTANCE_LINES = 32
"""How many cache lines ahead of the pixel being added the prefetch runs."""

_KIND_UNSIGNED, _KIND_SIGNED, _KIND_FLOAT = 0, 1, 2


@intrinsic
def _prefetch(typingctx, array, index):
    """Hint the CPU to load the cache line of ``array[index]`` (read, keep in all cache levels)."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fn_type, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _gather_kernel(flat, pixels, segments, lines, n_segments, kind, bad_value, sums, n_bad):
    """Add ``flat[f, pixels[i]]`` to ``sums[f, segments[i]]``; count bad pixels in ``n_bad``.

    ``pixels`` ascending; ``lines`` ascending pixel indices, one per cache line the pixels
    touch. Returns whether any pixel of any frame was bad.
    """
    any_bad = False
    n_lines = lines.size
    for f in range(flat.shape[0]):
        row = flat[f]
        head = min(PREFETCH_DISTANCE_LINES, n_lines)
        for k in range(head):
            _prefetch(row, lines[k])
        cursor = 0
        for i in range(pixels.size):
            p = pixels[i]
            while cursor < n_lines and lines[cursor] <= p:
                ahead = cursor + PREFETCH_DISTANCE_LINES
                if ahead < n_lines:
                    _prefetch(row, lines[ahead])
                cursor += 1
            v = row[p]
            if kind == _KIND_UNSIGNED:
                bad = v == bad_value
            elif kind == _KIND_SIGNED:
                bad = v < 0 or v == bad_value
            else:
                bad = not (v < bad_value and v > -np.inf)
            s = segments[i]
            if bad:
                n_bad[f, s] += 1
                any_bad = True
            else:
                sums[f, s] += v
    return any_bad


class RingGather:
    """Segment sums of a fixed set of pixels, for frames flattened to (n_frames, n_pixels).

    Parameters
    ----------
    pixels : flat pixel indices to read (any order, no duplicates).
    segments : segment index of each pixel, 0 … n_segments-1.
    n_segments : number of segments.
    """

    def __init__(self, pixels: np.ndarray, segments: np.ndarray, n_segments: int):
        order = np.argsort(pixels, kind="stable")
        self.pixels = np.ascontiguousarray(np.asarray(pixels, dtype=np.int64)[order])
        self.segments = np.ascontiguousarray(np.asarray(segments, dtype=np.int64)[order])
        self.n_segments = int(n_segments)
        self._lines: dict[int, np.ndarray] = {}

    def _lines_for(self, itemsize: int) -> np.ndarray:
        """One pixel index per cache line touched (lines counted from pixel 0), ascending."""
        lines = self._lines.get(itemsize)
        if lines is None:
            per_line = max(CACHE_LINE_BYTES // itemsize, 1)
            lines = np.unique(self.pixels // per_line) * per_line
            lines = np.ascontiguousarray(np.maximum(lines, self.pixels[0]))
            self._lines[itemsize] = lines
        return lines

    def sums(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-segment sums and bad-pixel counts of frames ``flat`` (n_frames, n_pixels).

        Returns
        -------
        sums : float64 (n_frames, n_segments), in the frames' units.
        n_bad : int64 (n_frames, n_segments), or None when no pixel of any frame was bad.
        """
        flat = np.ascontiguousarray(flat)
        kind = flat.dtype.kind
        if kind == "u":
            code, bad_value = _KIND_UNSIGNED, np.iinfo(flat.dtype).max
        elif kind == "i":
            code, bad_value = _KIND_SIGNED, GAP_VALUE_U32 if np.iinfo(flat.dtype).max >= GAP_VALUE_U32 else -1
        elif kind == "f":
            code, bad_value = _KIND_FLOAT, float(GAP_VALUE_U32)
        else:
            raise TypeError(f"Frames of dtype {flat.dtype} are not supported (use integer or float counts).")
        bad_value = flat.dtype.type(bad_value)
        n_frames = flat.shape[0]
        sums = np.zeros((n_frames, self.n_segments), dtype=np.float64)
        n_bad = np.zeros((n_frames, self.n_segments), dtype=np.int64)
        any_bad = _gather_kernel(
            flat, self.pixels, self.segments, self._lines_for(flat.dtype.itemsize), self.n_segments,
            code, bad_value, sums, n_bad,
        )
        return sums, (n_bad if any_bad else None)
