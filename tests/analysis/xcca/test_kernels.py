"""The compiled per-frame steps of the XCCA engine against the NumPy reference functions.

Static path (no bad pixel in the frame) and dynamic path (gap values on ring pixels), single
frames and batches, on a small detector with a masked sector and a few bright arcs.
"""

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import GAP_VALUE_U32
from mc_beamline.analysis.xcca.ccf import masked_ccf, ring_mean
from mc_beamline.analysis.xcca.frame import RingSettings, XccaFrameEngine
from mc_beamline.analysis.xcca.peaks import detect_peaks, smooth_profiles
from mc_beamline.instrument.geometry import DetectorGeometry

RINGS = [RingSettings(3.0, 0.15, 1.0, 5.0), RingSettings(6.0, 0.2, 2.0, 5.0, 10.0)]


@pytest.fixture(scope="module")
def geom():
    return DetectorGeometry.from_beam_center((240, 250), (120.0, 124.0), dist_m=0.05, energy_kev=12.4)


@pytest.fixture(scope="module")
def engine(geom):
    mask = np.zeros(geom.shape, bool)
    mask[:, 180:186] = True  # a module gap across both rings
    mask[100:140, 124:] = True  # a beamstop arm
    return XccaFrameEngine(geom, RINGS, 180, mask, pairs=((0, 1), (1, 1)))


def frames(geom, n, seed=0):
    rng = np.random.default_rng(seed)
    phi = geom.phi_map
    out = []
    for _ in range(n):
        lam = np.full(geom.shape, 2.0)
        for c in rng.uniform(-180, 180, 3):
            d = np.mod(phi - c + 180.0, 360.0) - 180.0
            lam += 20.0 * np.exp(-0.5 * (d / 4.0) ** 2)
        out.append(rng.poisson(lam).astype(np.uint32))
    return np.stack(out)


def with_gaps(engine, frame, step=53):
    frame = frame.copy()
    frame.ravel()[engine.operator._pix[::step]] = GAP_VALUE_U32
    return frame


def check_against_reference(engine, frame, res):
    p = engine.operator.regroup(frame)
    np.testing.assert_allclose(res.profiles.mean, p.mean, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(res.profiles.weight, p.weight)
    np.testing.assert_array_equal(res.profiles.n_good, p.n_good)
    np.testing.assert_allclose(res.ring_mean, ring_mean(p.mean, p.weight), rtol=1e-12)
    for k, (i, j) in enumerate(engine.pairs):
        ref = masked_ccf(p.mean[i], p.weight[i], p.mean[j], p.weight[j])
        np.testing.assert_allclose(res.ccf[k], ref, rtol=1e-9, atol=1e-12, equal_nan=True)
    sm = smooth_profiles(p.mean, p.weight, p.n_good, engine.smooth_bins, typical_coverage=engine._typical_cov)
    np.testing.assert_array_equal(res.smoothed.valid, sm.valid)
    np.testing.assert_allclose(res.smoothed.value, sm.value, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(res.smoothed.sigma, sm.sigma, rtol=1e-10, equal_nan=True)
    ref_peaks = detect_peaks(engine.azimuth_deg, sm, engine.smooth_bins, engine.min_snr, engine.window_deg)
    assert [len(r) for r in res.peaks] == [len(r) for r in ref_peaks]
    for mine, theirs in zip(res.peaks, ref_peaks):
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(tuple(a), tuple(b), rtol=1e-9, atol=1e-9)


def test_static_path_matches_the_reference(engine, geom):
    found = 0
    for frame in frames(geom, 4):
        res = engine.process(frame)
        check_against_reference(engine, frame, res)
        found += sum(len(r) for r in res.peaks)
    assert found >= 8


def test_dynamic_path_matches_the_reference(engine, geom):
    frame = with_gaps(engine, frames(geom, 1, seed=3)[0])
    res = engine.process(frame)
    assert res.profiles.n_good.sum() < engine.operator.n_static.sum()
    check_against_reference(engine, frame, res)


def test_batches_match_single_frames_on_both_paths(engine, geom):
    stack = frames(geom, 3, seed=7)
    for batch in (stack, np.stack([stack[0], with_gaps(engine, stack[1]), stack[2]])):
        results = engine.process_batch(batch)
        for frame, res in zip(batch, results):
            single = engine.process(frame)
            np.testing.assert_allclose(res.ccf, single.ccf, rtol=1e-12, atol=1e-14, equal_nan=True)
            np.testing.assert_allclose(res.smoothed.sigma, single.smoothed.sigma, rtol=1e-12, equal_nan=True)
            assert [len(r) for r in res.peaks] == [len(r) for r in single.peaks]
            for a, b in zip(res.peaks, single.peaks):
                assert [p.azimuth_deg for p in a] == pytest.approx([p.azimuth_deg for p in b], abs=1e-9)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_frame_dtypes_give_the_same_result(engine, geom, dtype):
    frame = frames(geom, 1, seed=11)[0]
    ref = engine.process(frame)
    res = engine.process(frame.astype(dtype))
    np.testing.assert_array_equal(res.profiles.mean, ref.profiles.mean)
    np.testing.assert_array_equal(res.ccf, ref.ccf)
    assert res.peaks == ref.peaks
