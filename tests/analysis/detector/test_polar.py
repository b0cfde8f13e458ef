"""Ring-restricted polar regrouping: bins, weights, bad pixels, errors."""

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import (
    GAP_VALUE_U32,
    RingNotOnDetectorError,
    RingPolarOperator,
    azimuth_bin_centers_deg,
    azimuth_bin_index,
)
from tests.analysis.detector.conftest import SMALL_RINGS

RINGS = SMALL_RINGS


@pytest.fixture(scope="module")
def geom(small_geometry):
    return small_geometry


@pytest.fixture(scope="module")
def op(small_operator):
    return small_operator


def test_bin_centres_and_indices_cover_minus_180_to_180():
    c = azimuth_bin_centers_deg(360)
    assert c[0] == pytest.approx(-179.0) and c[-1] == pytest.approx(180.0)
    assert np.array_equal(azimuth_bin_index(c, 360), np.arange(360))
    assert azimuth_bin_index(np.array([-180.0, 179.6, 180.0]), 360).tolist() == [359, 359, 359]


def test_ring_not_on_detector_raises(geom):
    with pytest.raises(RingNotOnDetectorError, match="not on the detector"):
        RingPolarOperator(geom, [(3.0, 0.1), (60.0, 0.5)])


def test_mask_of_wrong_shape_is_refused(geom):
    with pytest.raises(ValueError, match="Mask shape"):
        RingPolarOperator(geom, RINGS, mask=np.zeros((3, 3), bool))


def test_uniform_frame_gives_its_value_and_weights_in_0_1(op, geom):
    p = op.regroup(np.full(geom.shape, 5, dtype=np.uint32))
    assert p.mean.shape == (2, 180)
    assert np.allclose(p.mean[np.isfinite(p.mean)], 5.0)
    assert np.all((p.weight >= 0) & (p.weight <= 1))
    assert np.all(np.isnan(p.mean) == (p.weight == 0))
    assert (p.weight[1] > 0.5).mean() > 0.95  # the 6 nm⁻¹ ring is fully on this detector


def test_only_ring_pixels_are_read(op, geom):
    assert op.n_pixels < 0.1 * geom.shape[0] * geom.shape[1]
    rng = np.random.default_rng(1)
    frame = rng.poisson(3.0, geom.shape).astype(np.uint32)
    before = op.regroup(frame).mean
    q = geom.q_map
    outside = np.ones(geom.shape, bool)
    for q0, hw in RINGS:
        outside &= np.abs(q - q0) > hw
    frame[outside] = 10**6
    assert np.array_equal(op.regroup(frame).mean, before, equal_nan=True)


def test_gap_value_and_non_finite_pixels_are_bad(op, geom):
    rng = np.random.default_rng(2)
    frame = np.full(geom.shape, 7, dtype=np.uint32)
    ring_pixels = op._pix
    bad = rng.choice(ring_pixels, 300, replace=False)
    frame.ravel()[bad] = GAP_VALUE_U32
    p = op.regroup(frame)
    assert np.allclose(p.mean[np.isfinite(p.mean)], 7.0)
    assert p.n_good.sum() == op.n_static.sum() - 300
    as_float = frame.astype(np.float64)
    as_float.ravel()[bad[:100]] = np.nan
    as_float.ravel()[bad[100:]] = np.inf
    q = op.regroup(as_float)
    assert np.allclose(q.mean[np.isfinite(q.mean)], 7.0)
    assert np.array_equal(q.n_good, p.n_good)
    # a float32 copy of the gap value (rounded to 2**32) is still bad
    assert np.allclose(op.regroup(frame.astype(np.float32)).mean, p.mean, equal_nan=True)


def test_azimuth_convention_follows_the_phi_map(op, geom):
    frame = np.zeros(geom.shape, dtype=np.uint32)
    spot = (np.abs(geom.q_map - 6.0) < 0.2) & (np.abs(geom.phi_map - 30.0) < 1.0)
    frame[spot] = 100
    p = op.regroup(frame)
    assert op.azimuth_deg[np.nanargmax(p.mean[1])] == pytest.approx(30.0, abs=2.0)


def test_batch_equals_single_frames(op, geom):
    rng = np.random.default_rng(3)
    frames = rng.poisson(2.0, (3,) + geom.shape).astype(np.uint32)
    frames[1].ravel()[op._pix[:50]] = GAP_VALUE_U32
    batch = op.regroup_batch(frames)
    for i in range(3):
        single = op.regroup(frames[i])
        assert np.allclose(batch.mean[i], single.mean, equal_nan=True)
        assert np.array_equal(batch.n_good[i], single.n_good)


def test_radial_slices_correct_bins_that_sample_part_of_the_ring(geom):
    """An isotropic ring whose inner half is masked in a sector keeps its level with slices."""
    q, phi = geom.q_map, geom.phi_map
    frame = 100.0 * np.exp(-0.5 * ((q - 5.9) / 0.12) ** 2) + 1.0  # falls across the ring
    mask = (q < 6.0) & (phi > 0) & (phi < 40)
    sector = (azimuth_bin_centers_deg(180) > 4) & (azimuth_bin_centers_deg(180) < 36)
    dev = {}
    for n_radial in (1, 8):
        full = RingPolarOperator(geom, [(6.0, 0.2)], 180, None, n_radial=n_radial).regroup(frame).mean[0]
        cut = RingPolarOperator(geom, [(6.0, 0.2)], 180, mask, n_radial=n_radial).regroup(frame).mean[0]
        dev[n_radial] = np.nanmax(np.abs(cut[sector] / full[sector] - 1))
    assert dev[1] > 0.3
    assert dev[8] < 0.3 * dev[1]


def test_wrong_frame_shape_is_refused(op):
    with pytest.raises(ValueError, match="does not match"):
        op.regroup(np.zeros((10, 10)))
