"""The compiled peak cut (:meth:`PeakCutAccumulator.frame_cut`) equals the NumPy reference exactly.

Sums and counts on the (q, Δφ) grid, bit for bit, for the frame dtypes the detector and
the simulators produce (and the bad values of each: the Eiger gap value, negatives, NaN
and infinities), for windows across the ±180° seam and at its edges.
"""

from __future__ import annotations

import numpy as np
import pytest

from mc_beamline.analysis.xcca.disorder import PeakCutAccumulator
from mc_beamline.instrument.geometry import DetectorGeometry

GAP = 2**32 - 1


@pytest.fixture(scope="module")
def cut():
    geom = DetectorGeometry.from_beam_center((300, 280), (150.0, 135.0), dist_m=0.05, energy_kev=12.4)
    mask = np.zeros(geom.shape, bool)
    mask[:, 100:104] = True
    q0 = float(np.median(geom.q_map))
    return PeakCutAccumulator(geom, mask, q0, 0.15 * q0)


def frames_of(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, shape).astype(np.float64)
    counts[rng.random(shape) < 0.002] = 1e6
    dt = np.dtype(dtype)
    if dt.kind == "u":
        frame = np.minimum(counts, np.iinfo(dt).max).astype(dt)
        frame[:, 200:203] = np.iinfo(dt).max
    elif dt.kind == "i":
        frame = np.minimum(counts, np.iinfo(dt).max).astype(dt)
        frame[rng.random(shape) < 0.01] = -3
        if np.iinfo(dt).max >= GAP:
            frame[:, 200:203] = GAP
    else:
        frame = (counts + rng.random(shape)).astype(dt)  # non-integer: summation order matters
        frame[:, 200:203] = GAP
        frame[rng.random(shape) < 0.01] = np.nan
        frame[rng.random(shape) < 0.001] = np.inf
    return frame


AZIMUTHS = [-180.0, -179.9, -170.0, -160.75, -90.0, -12.3456, 0.0, 0.25, 33.3, 90.0, 159.5, 160.25, 170.0,
            179.75, 180.0]


@pytest.mark.parametrize("dtype", ["<u4", "<u2", "u1", "<u8", "<i4", "<i8", "<i2", "<f4", "<f8"])
def test_compiled_cut_equals_the_numpy_reference(cut, dtype):
    frame = frames_of(dtype, cut.shape)
    rng = np.random.default_rng(1)
    for c in AZIMUTHS + list(rng.uniform(-180, 180, 10)):
        sums, counts = cut.frame_cut(frame, c)
        ref_sums, ref_counts = cut._frame_cut_numpy(frame, c)
        assert sums.shape == ref_sums.shape and counts.dtype == ref_counts.dtype
        assert np.array_equal(sums, ref_sums) and np.array_equal(counts, ref_counts), (dtype, c)
        assert counts.sum() > 0


def test_boolean_and_non_contiguous_frames(cut):
    frame = frames_of("<u4", cut.shape)
    view = np.asfortranarray(frame)
    for c in (-170.0, 45.0):
        assert all(np.array_equal(a, b) for a, b in zip(cut.frame_cut(view, c), cut._frame_cut_numpy(frame, c)))
        flags = frame > 2
        assert all(np.array_equal(a, b) for a, b in zip(cut.frame_cut(flags, c), cut._frame_cut_numpy(flags, c)))


def test_wrong_shape_is_refused(cut):
    with pytest.raises(ValueError):
        cut.frame_cut(np.zeros((3, 3), np.uint32), 0.0)
