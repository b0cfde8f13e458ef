"""Compiled gather of ring pixels into (ring, radial slice, bin) sums, in one pass per frame.

Regrouping a frame reads only the few per cent of its pixels that lie on the analysed rings.
Those pixels come in short runs along detector rows (≈1500 runs for two rings on a 1 Mpx
detector), so reading them is bound by memory latency, not bandwidth: each run starts on a
cache line the hardware prefetcher could not predict. :class:`RingGather` therefore visits the
pixels in memory order and issues a software prefetch a few dozen chunks ahead (see
``benchmarks/bench_xcca.py``).

The pixels are stored as *chunks*: runs of consecutive addresses that fall into one segment
(≈10 000 chunks of ≈5 pixels for two rings at 1 Mpx). A chunk is summed in a register and
added to its segment once, so consecutive pixels do not wait for each other's store to the
same segment; the prefetch of each chunk's first pixel covers the cache lines of the runs.

Bad pixels are recognised exactly as :func:`mc_beamline.analysis.detector.polar.bad_value_mask` does:
the dtype maximum of unsigned integers (2³²-1, the Eiger gap value, for uint32), negative
values or 2³²-1 in signed integers, non-finite values or values ≥ 2³²-1 in floats. Their
value is not added; they are counted per segment instead.

Sums are float64 in the frames' units. Integer frames of up to 32 bits are summed exactly in
int64 per chunk; other frames pixel by pixel in float64, in increasing memory address within
each segment (the order NumPy's ``add.reduceat`` would use on the address-sorted pixels), so
integer counts are exact up to 2⁵³ per segment and every sum equals that reference. An
optional per-segment ``scale`` (intensity corrections) multiplies each finished sum once, in
the same compiled pass (the product equals NumPy's ``sums * scale``).
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

GAP_VALUE_U32 = 2**32 - 1
PREFETCH_DISTANCE_CHUNKS = 96
"""How many chunks ahead of the chunk being added the prefetch runs (≈ 30 cache lines)."""

# how a pixel value is summed and tested: exact int64 per chunk (integers of ≤ 32 bits),
# or float64 per pixel (wider integers and floats)
_MODE_UNSIGNED_INT, _MODE_SIGNED_INT, _MODE_UNSIGNED_FLOAT, _MODE_SIGNED_FLOAT, _MODE_FLOAT = range(5)


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
def _gather_kernel(flat, starts, lengths, segments, mode, bad_value, scale, sums, n_bad):
    """Add the good pixels of chunk c (``lengths[c]`` pixels from ``starts[c]``) of each frame
    ``flat[f]`` to ``sums[f, segments[c]]`` (zeroed first); count bad pixels in ``n_bad``;
    then multiply each sum by ``scale[segment]`` unless ``scale`` is empty.

    ``starts`` ascending. Returns whether any pixel of any frame was bad.
    """
    any_bad = False
    n_chunks = starts.size
    for f in range(flat.shape[0]):
        row = flat[f]
        out = sums[f]
        out[:] = 0.0
        for c in range(min(PREFETCH_DISTANCE_CHUNKS, n_chunks)):
            _prefetch(row, starts[c])
        for c in range(n_chunks):
            ahead = c + PREFETCH_DISTANCE_CHUNKS
            if ahead < n_chunks:
                _prefetch(row, starts[ahead])
            p0 = starts[c]
            p1 = p0 + lengths[c]
            s = segments[c]
            n = 0
            if mode == _MODE_UNSIGNED_INT:  # bad = the dtype maximum: subtract it afterwards
                total = 0
                for p in range(p0, p1):
                    v = row[p]
                    total += np.int64(v)
                    n += v == bad_value
                out[s] += total - n * np.int64(bad_value)
            elif mode == _MODE_SIGNED_INT:  # bad = negative (2³²-1 does not fit)
                total = 0
                for p in range(p0, p1):
                    v = np.int64(row[p])
                    bad = v < 0
                    total += 0 if bad else v
                    n += bad
                out[s] += total
            else:
                acc = out[s]
                for p in range(p0, p1):
                    v = row[p]
                    if mode == _MODE_UNSIGNED_FLOAT:
                        bad = v == bad_value
                    elif mode == _MODE_SIGNED_FLOAT:
                        bad = v < 0 or v == bad_value
                    else:
                        bad = not (v < bad_value and v > -np.inf)
                    if bad:
                        n += 1
                    else:
                        acc += v
                out[s] = acc
            if n:
                n_bad[f, s] += n
                any_bad = True
        if scale.size:
            for s in range(out.size):
                out[s] *= scale[s]
    return any_bad


class RingGather:
    """Segment sums of a fixed set of pixels, for frames flattened to (n_frames, n_pixels).

    Parameters
    ----------
    pixels : flat pixel indices to read (any order, no duplicates).
    segments : segment index of each pixel, 0 … n_segments-1.
    n_segments : number of segments.
    scale : factor each segment's sum is multiplied by (n_segments,), or None.
    """

    def __init__(self, pixels: np.ndarray, segments: np.ndarray, n_segments: int,
                 scale: np.ndarray | None = None):
        order = np.argsort(pixels, kind="stable")
        pixels = np.asarray(pixels, dtype=np.int64)[order]
        segments = np.asarray(segments, dtype=np.int64)[order]
        new = np.ones(pixels.size, dtype=bool)
        new[1:] = (np.diff(pixels) != 1) | (np.diff(segments) != 0)
        first = np.flatnonzero(new)
        self.starts = np.ascontiguousarray(pixels[first])
        self.lengths = np.diff(np.append(first, pixels.size)).astype(np.int64)
        self.chunk_segments = np.ascontiguousarray(segments[first])
        self.n_segments = int(n_segments)
        if scale is not None and np.shape(scale) != (self.n_segments,):
            raise ValueError(f"Give one scale factor per segment ({self.n_segments}), got shape {np.shape(scale)}.")
        self.scale = np.zeros(0) if scale is None else np.ascontiguousarray(scale, dtype=np.float64)

    def sums(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-segment sums and bad-pixel counts of frames ``flat`` (n_frames, n_pixels).

        Returns
        -------
        sums : float64 (n_frames, n_segments), in the frames' units (times the scale, if any).
        n_bad : int64 (n_frames, n_segments), or None when no pixel of any frame was bad.
        """
        flat = np.ascontiguousarray(flat)
        mode, bad_value = _mode(flat.dtype)
        n_frames = flat.shape[0]
        sums = np.empty((n_frames, self.n_segments), dtype=np.float64)
        n_bad = np.zeros((n_frames, self.n_segments), dtype=np.int64)
        any_bad = _gather_kernel(flat, self.starts, self.lengths, self.chunk_segments, mode, bad_value, self.scale,
                                 sums, n_bad)
        return sums, (n_bad if any_bad else None)


@lru_cache(maxsize=None)
def _mode(dt: np.dtype) -> tuple[int, np.generic]:
    """How the kernel sums and tests pixels of dtype ``dt``: (mode, bad value in that dtype)."""
    if dt.kind == "u":
        return (_MODE_UNSIGNED_INT if dt.itemsize <= 4 else _MODE_UNSIGNED_FLOAT), dt.type(np.iinfo(dt).max)
    if dt.kind == "i":
        if np.iinfo(dt).max >= GAP_VALUE_U32:
            return _MODE_SIGNED_FLOAT, dt.type(GAP_VALUE_U32)
        return _MODE_SIGNED_INT, dt.type(-1)
    if dt.kind == "f":
        return _MODE_FLOAT, dt.type(GAP_VALUE_U32)
    raise TypeError(f"Frames of dtype {dt} are not supported (use integer or float counts).")
