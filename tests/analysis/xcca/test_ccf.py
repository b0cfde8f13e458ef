"""Mask-corrected CCF: sign convention, masks, Fourier components, accumulation, engine."""

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import azimuth_bin_centers_deg
from mc_beamline.analysis.xcca.ccf import (
    CcfAccumulator,
    delta_grid_deg,
    fourier_components,
    masked_ccf,
    ring_fourier_coefficients,
)
from mc_beamline.analysis.xcca.frame import RingSettings, XccaFrameEngine
from mc_beamline.analysis.xcca.peaks import detect_peaks, smooth_profiles
from mc_beamline.physics.detector_model import GAP_VALUE, offaxis_geometry
from mc_beamline.physics.mesocrystal import MesocrystalSimulator

N = 360
PHI = azimuth_bin_centers_deg(N)
DELTA = delta_grid_deg(N)


def ring(centres, sigma=1.5, amp=10.0, bg=0.5):
    out = np.full(N, bg)
    for c in np.atleast_1d(centres):
        d = np.mod(PHI - c + 180.0, 360.0) - 180.0
        out += amp * np.exp(-0.5 * (d / sigma) ** 2)
    return out


def test_delta_grid_is_ascending_in_minus_180_to_180():
    assert DELTA[0] == pytest.approx(-179.0) and DELTA[-1] == pytest.approx(180.0)
    assert np.all(np.diff(DELTA) > 0)
    odd = delta_grid_deg(7)
    assert odd.min() > -180 and odd.max() <= 180 and 0.0 in odd


@pytest.mark.parametrize("phi0, delta0", [(10.0, 40.0), (-170.0, -65.0), (100.0, 180.0)])
def test_sign_convention_q2_peak_at_phi_plus_delta_gives_plus_delta(phi0, delta0):
    """C(Δ) = <I(q1, φ) I(q2, φ+Δ)>: the CCF peaks at the angle from the q1 to the q2 peak."""
    c = masked_ccf(ring(phi0), None, ring(phi0 + delta0), None)
    assert DELTA[np.argmax(c)] == pytest.approx(delta0, abs=0.5)
    swapped = masked_ccf(ring(phi0 + delta0), None, ring(phi0), None)
    assert DELTA[np.argmax(swapped)] == pytest.approx(-delta0 if delta0 != 180 else 180.0, abs=0.5)


def test_masked_arc_gives_the_full_ring_ccf_within_noise():
    """Averaged over random orientations, an arc-masked q2 ring gives the full-ring CCF."""
    rng = np.random.default_rng(5)
    arc = (PHI > -10) & (PHI < 100)
    full, masked = CcfAccumulator(N), CcfAccumulator(N)
    sl = np.array([49.2, 130.8, -49.2, -130.8])
    al = np.array([35.26, -35.26, 144.74, -144.74])
    for _ in range(600):
        u = rng.uniform(-180, 180)
        i1 = rng.poisson(ring(u + sl, 1.5, 8.0) * 20) / 20.0
        i2 = rng.poisson(ring(u + al, 4.0, 3.0) * 50) / 50.0
        full.add(masked_ccf(i1, None, i2, None))
        masked.add(masked_ccf(i1, None, np.where(arc, i2, np.nan), arc.astype(float)))
    a, b = full.mean(), masked.mean()
    span = a.max() - a.min()
    assert np.max(np.abs(a - b)) < 0.1 * span
    # both peak at the SL–AL angle differences ±(90 ± θ ± β)
    for d in (13.95, 84.48, 95.52, 166.05):
        for s in (d, -d):
            k = np.argmin(np.abs(DELTA - s))
            assert a[k] > a.min() + 0.5 * span and b[k] > b.min() + 0.5 * span


def test_six_fold_ring_has_fourier_components_at_6_and_12():
    i = ring(np.arange(6) * 60.0 + 7.0, sigma=4.0, amp=5.0)
    c = masked_ccf(i, None, i, None, normalise=False)
    cn = np.abs(fourier_components(c, 24))
    others = [n for n in range(1, 25) if n % 6]
    assert cn[6] > 50 * max(cn[others])
    assert cn[12] > 50 * max(cn[others])
    assert np.argmax(cn[1:]) + 1 == 6
    # unmasked: C_n = I_n* I_n
    coeff = ring_fourier_coefficients(i, 24)
    assert np.allclose(cn, np.abs(coeff) ** 2, rtol=1e-6, atol=1e-9)


def test_fourier_components_follow_the_sign_convention():
    i1, i2 = ring(20.0, 3.0), ring(50.0, 3.0)
    c = masked_ccf(i1, None, i2, None, normalise=False)
    c1 = fourier_components(c, 1)[1]
    expected = np.conj(ring_fourier_coefficients(i1, 1)[1]) * ring_fourier_coefficients(i2, 1)[1]
    assert c1 == pytest.approx(expected, rel=1e-6)
    assert np.degrees(np.angle(c1)) == pytest.approx(-30.0, abs=0.5)  # e^{-i n Δ}, Δ = +30°


def test_delta_never_covered_is_nan_not_zero():
    w = ((PHI > 0) & (PHI <= 30)).astype(float)
    i = np.where(w > 0, ring(15.0, 3.0), np.nan)
    c = masked_ccf(i, w, i, w)
    covered = np.abs(DELTA) < 29.5
    assert np.all(np.isfinite(c[covered]))
    assert np.all(np.isnan(c[np.abs(DELTA) > 30.5]))
    acc = CcfAccumulator(N)
    acc.add(c)
    acc.add(np.stack([c, c]))
    mean = acc.mean()
    assert np.all(np.isnan(mean[~covered & (np.abs(DELTA) > 30.5)]))
    assert np.allclose(mean[covered], c[covered])
    assert acc.n_frames == 3


def test_denominator_threshold_is_half_a_bin():
    """Overlap of more than half a bin's weight is defined; less is NaN."""
    w1 = np.zeros(N)
    w1[100] = 1.0
    w2 = np.zeros(N)
    w2[140] = 0.6
    c = masked_ccf(np.ones(N), w1, np.ones(N), w2, normalise=False)
    assert np.isfinite(c[DELTA == 40.0]).all()
    w2[140] = 0.4
    c = masked_ccf(np.ones(N), w1, np.ones(N), w2, normalise=False)
    assert np.isnan(c).all()


def test_merge_of_two_halves_equals_one_pass_and_state_round_trips():
    rng = np.random.default_rng(9)
    rows = rng.normal(size=(40, N))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    one = CcfAccumulator(N)
    for r in rows:
        one.add(r)
    a, b = CcfAccumulator(N), CcfAccumulator(N)
    a.add(rows[:17])
    b.add(rows[17:])
    merged = CcfAccumulator.from_state(a.to_state()).merge(b)
    assert np.array_equal(merged.count, one.count)
    assert np.allclose(merged.mean(), one.mean(), rtol=1e-12, equal_nan=True)
    assert merged.n_frames == 40
    with pytest.raises(ValueError):
        one.merge(CcfAccumulator(180))


def test_batch_of_profiles_is_vectorised():
    rng = np.random.default_rng(4)
    i1 = rng.random((5, N)) + 1
    i2 = rng.random((5, N)) + 1
    batch = masked_ccf(i1, None, i2, None)
    for k in range(5):
        assert np.allclose(batch[k], masked_ccf(i1[k], None, i2[k], None))


# ------------------------------------------------------------------ fused frame engine
@pytest.fixture(scope="module")
def sim():
    return MesocrystalSimulator(geometry=offaxis_geometry())


@pytest.fixture(scope="module")
def engine(sim):
    rings = [RingSettings(1.72, 0.06, 1.0, 7.0), RingSettings(18.3, 0.55, 2.0, 7.0)]
    return XccaFrameEngine(sim.geometry, rings, 360, sim.mask)


def _zone_position(sim):
    for x in np.arange(-10, 10, 0.4):
        for y in np.arange(-6, 6, 0.4):
            t = sim.truth_at(x, y)
            if t.zone and t.weight > 0.99:
                return x, y
    raise AssertionError("no [110]-zone position found")


def test_engine_matches_the_reference_functions(sim, engine):
    x, y = _zone_position(sim)
    frame = sim.frame(x, y, noise_key=11)
    res = engine.process(frame)
    p = res.profiles
    ref = masked_ccf(p.mean[0], p.weight[0], p.mean[1], p.weight[1])
    assert np.allclose(res.ccf[0], ref, rtol=1e-10, atol=1e-12, equal_nan=True)
    sm = smooth_profiles(p.mean, p.weight, p.n_good, engine.smooth_bins, typical_coverage=engine._typical_cov)
    assert np.allclose(sm.value, res.smoothed.value, rtol=1e-10, equal_nan=True)
    assert np.allclose(sm.sigma, res.smoothed.sigma, rtol=1e-10, equal_nan=True)
    peaks = detect_peaks(engine.azimuth_deg, sm, engine.smooth_bins, engine.min_snr, engine.window_deg)
    for mine, theirs in zip(peaks, res.peaks):
        assert [q.azimuth_deg for q in mine] == pytest.approx([q.azimuth_deg for q in theirs], abs=1e-9)
    assert len(res.peaks[0]) >= 3 and len(res.peaks[1]) >= 1


def test_engine_batch_and_bad_pixels(sim, engine):
    x, y = _zone_position(sim)
    frames = np.stack([sim.frame(x, y, noise_key=k) for k in range(3)])
    batch = engine.process_batch(frames)
    for k in range(3):
        single = engine.process(frames[k])
        assert np.allclose(batch[k].ccf, single.ccf, rtol=1e-12, equal_nan=True)
        assert [q.azimuth_deg for q in batch[k].peaks[1]] == pytest.approx([q.azimuth_deg for q in single.peaks[1]])
    # pixels that read the gap value are dropped like masked ones (dynamic mask path)
    frame = frames[0].copy()
    hit = engine.operator._pix[::97]
    frame.ravel()[hit] = GAP_VALUE
    dyn = engine.process(frame)
    assert dyn.profiles.n_good.sum() == engine.operator.n_static.sum() - hit.size
    assert np.isfinite(dyn.ccf).sum() > 300
    assert np.nanmax(np.abs(dyn.ccf - batch[0].ccf)) < 0.05 * np.nanmax(np.abs(batch[0].ccf))
