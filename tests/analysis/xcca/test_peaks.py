"""Ring peak finding: noise, masked bins, periodic boundary, edges of partial arcs."""

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import azimuth_bin_centers_deg
from mc_beamline.analysis.xcca.peaks import (
    detect_peaks,
    find_ring_peaks,
    smooth_profiles,
)

N = 360
PHI = azimuth_bin_centers_deg(N)
NPIX = np.full(N, 40)


def counts(centres, sigma, amp, bg=0.3, seed=0):
    lam = np.full(N, bg)
    for c, s, a in zip(centres, sigma, amp):
        d = np.mod(PHI - c + 180.0, 360.0) - 180.0
        lam += a * np.exp(-0.5 * (d / s) ** 2)
    rng = np.random.default_rng(seed)
    return rng.poisson(lam * NPIX) / NPIX


def test_peaks_are_found_across_the_periodic_boundary():
    i = counts([179.6, 40.3, -75.0], [2.0, 4.0, 1.5], [5.0, 2.0, 3.0])
    peaks = find_ring_peaks(PHI, i, None, NPIX, smooth_deg=1.0)
    got = sorted(p.azimuth_deg for p in peaks)
    assert len(got) == 3
    assert got[0] == pytest.approx(-75.0, abs=0.3)
    assert got[1] == pytest.approx(40.3, abs=0.5)
    assert abs(np.mod(got[2] - 179.6 + 180, 360) - 180) < 0.3
    assert all(-180 < g <= 180 for g in got)
    widths = {round(p.azimuth_deg): p.width_deg for p in peaks}
    assert widths[40] == pytest.approx(2.3548 * 4.0, rel=0.25)


def test_masked_bins_inside_a_peak_are_bridged():
    i = counts([10.0], [3.0], [4.0])
    w = np.ones(N)
    gap = (PHI > 6) & (PHI < 10)
    w[gap] = 0
    i[gap] = np.nan
    peaks = find_ring_peaks(PHI, i, w, NPIX, smooth_deg=1.5)
    assert len(peaks) == 1
    assert peaks[0].azimuth_deg == pytest.approx(10.0, abs=1.0)


def test_a_maximum_on_the_edge_of_a_partial_arc_is_not_a_peak():
    i = counts([103.0, 50.0], [4.0, 4.0], [4.0, 4.0])
    arc = (PHI > -10) & (PHI < 100)
    w = arc.astype(float)
    i = np.where(arc, i, np.nan)
    peaks = find_ring_peaks(PHI, i, w, NPIX, smooth_deg=2.0)
    assert [round(p.azimuth_deg) for p in peaks] == [50]


def test_pure_poisson_noise_gives_no_peaks():
    found = 0
    for seed in range(200):
        i = counts([], [], [], bg=0.3, seed=seed)
        found += len(find_ring_peaks(PHI, i, None, NPIX, smooth_deg=2.0, min_snr=7.0))
    assert found == 0


def test_weak_peak_is_found_above_the_noise():
    i = counts([-30.0], [4.0], [0.4], bg=0.3, seed=3)
    peaks = find_ring_peaks(PHI, i, None, NPIX, smooth_deg=2.0, min_snr=7.0)
    assert len(peaks) == 1 and peaks[0].snr > 7


def test_detect_peaks_is_vectorised_over_rings_and_frames():
    a = counts([20.0], [2.0], [3.0], seed=1)
    b = counts([-100.0, 60.0], [3.0, 3.0], [3.0, 3.0], seed=2)
    prof = np.stack([np.stack([a, b]), np.stack([b, a])])  # (frames, rings, N)
    sm = smooth_profiles(prof, None, np.broadcast_to(NPIX, prof.shape), [1.0, 2.0])
    out = detect_peaks(PHI, sm, [1.0, 2.0], 7.0, 15.0)
    assert [[len(r) for r in f] for f in out] == [[1, 2], [2, 1]]
    assert out[0][1][0].azimuth_deg == pytest.approx(-100.0, abs=0.5)


def test_robust_noise_estimate_without_pixel_counts():
    i = counts([0.0], [3.0], [3.0]) * 7.5  # arbitrary units
    peaks = find_ring_peaks(PHI, i, smooth_deg=1.0)
    assert len(peaks) == 1 and peaks[0].azimuth_deg == pytest.approx(0.0, abs=0.5)
