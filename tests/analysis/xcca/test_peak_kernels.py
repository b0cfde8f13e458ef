"""The compiled peak search and background level against a plain NumPy/Python reference.

The reference follows the rules of :mod:`mc_beamline.analysis.xcca.peaks` literally, one bin at a
time; the compiled :class:`~mc_beamline.analysis.xcca.peaks.PeakSearch` must give the same peaks
(azimuth, height, prominence, width, S/N) on edge cases and on many random profiles.
"""

import math

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import azimuth_bin_centers_deg
from mc_beamline.analysis.xcca.peak_kernels import FWHM_PER_SIGMA, quantile_level
from mc_beamline.analysis.xcca.peaks import (
    PeakSearch,
    SmoothedProfiles,
    background_level,
    detect_peaks,
    smooth_profiles,
)

N = 360
PHI = azimuth_bin_centers_deg(N)


def reference_peaks(s, sigma, smooth_bins=1.0, min_snr=7.0, window_deg=15.0, min_prominence=0.0):
    """Peaks of one profile by the documented rules (NaN = invalid bin), sorted by azimuth."""
    n = s.size
    width = 360.0 / n
    half = min(max(1, int(np.round(window_deg / width))), n - 1)
    out = []
    for i in range(n):
        top, left, right = s[i], s[i - 1], s[(i + 1) % n]
        if not (top > left and top >= right):
            continue
        low_left = np.nanmin([s[(i - d) % n] for d in range(half + 1)])
        low_right = np.nanmin([s[(i + d) % n] for d in range(half + 1)])
        prom = top - max(low_left, low_right)
        threshold = min_snr * sigma[i]
        if min_prominence > 0:
            threshold = max(threshold, min_prominence) if np.isfinite(threshold) else np.nan
        if not prom >= threshold:
            continue
        curv = left - 2.0 * top + right
        sigma_tot2 = prom / -curv if curv < 0 else math.inf
        k = min(max(round(math.sqrt(sigma_tot2)), 1), half) if math.isfinite(sigma_tot2) else 1
        ym, yp = s[(i - k) % n] - (top - prom), s[(i + k) % n] - (top - prom)
        offset = 0.0
        if 0 < ym < math.inf and 0 < yp < math.inf and prom > 0:
            c = math.log(ym) - 2.0 * math.log(prom) + math.log(yp)
            if c < 0:
                vertex = k * 0.5 * (math.log(ym) - math.log(yp)) / c
                offset = vertex if abs(vertex) <= k else 0.0
        phi = PHI[0] + (i + offset) * width
        phi = phi - 360.0 if phi > 180.0 else (phi + 360.0 if phi <= -180.0 else phi)
        fwhm = FWHM_PER_SIGMA * math.sqrt(max(sigma_tot2 - smooth_bins**2, 0.0)) * width
        out.append((phi, top, prom, fwhm, prom / sigma[i]))
    return sorted(out, key=lambda p: p[0])


def compiled_peaks(s, sigma, smooth_bins=1.0, min_snr=7.0, window_deg=15.0, min_prominence=0.0):
    sm = SmoothedProfiles(s, sigma, np.isfinite(s))
    return [tuple(p) for p in detect_peaks(PHI, sm, smooth_bins, min_snr, window_deg, min_prominence)]


def assert_same(mine, ref):
    assert len(mine) == len(ref)
    for a, b in zip(mine, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def gaussian_profile(centres, amps, sigma_deg=3.0, bg=1.0):
    s = np.full(N, bg)
    for c, a in zip(centres, amps):
        d = np.mod(PHI - c + 180.0, 360.0) - 180.0
        s += a * np.exp(-0.5 * (d / sigma_deg) ** 2)
    return s


SIGMA = np.full(N, 0.01)


@pytest.mark.parametrize("centre", [180.0, 179.5, -179.6, 0.3, 90.0])
def test_peak_at_and_near_the_wrap_around(centre):
    s = gaussian_profile([centre], [2.0])
    mine = compiled_peaks(s, SIGMA)
    assert_same(mine, reference_peaks(s, SIGMA))
    assert len(mine) == 1
    assert abs(np.mod(mine[0][0] - centre + 180.0, 360.0) - 180.0) < 0.05
    assert -180.0 < mine[0][0] <= 180.0


def test_nan_bins_next_to_a_maximum_and_inside_windows():
    s = gaussian_profile([-40.0, 60.0, 120.0], [2.0, 2.0, 2.0])
    s[(PHI > -39.5) & (PHI < -30)] = np.nan  # right neighbour of the first maximum masked
    s[(PHI > 65) & (PHI < 70)] = np.nan  # inside the window of the second
    mine = compiled_peaks(s, SIGMA)
    assert_same(mine, reference_peaks(s, SIGMA))
    assert [round(p[0]) for p in mine] == [60, 120]


def test_plateau_gives_one_peak_refined_into_the_plateau():
    s = gaussian_profile([], [])
    s[100:103] = 3.0  # flat top over three bins
    s[99] = s[103] = 2.0
    mine = compiled_peaks(s, SIGMA)
    assert_same(mine, reference_peaks(s, SIGMA))
    assert len(mine) == 1 and PHI[100] <= mine[0][0] <= PHI[102]  # found on the first bin, refined


def test_no_peaks_on_a_flat_or_monotonic_profile():
    assert compiled_peaks(np.ones(N), SIGMA) == []
    ramp = np.linspace(0.0, 1.0, N)  # one maximum at the wrap, with no drop on its right window
    assert_same(compiled_peaks(ramp, SIGMA), reference_peaks(ramp, SIGMA))


def test_all_masked_ring():
    s = np.full(N, np.nan)
    assert compiled_peaks(s, np.full(N, np.nan)) == []
    assert quantile_level(s, np.empty(N), 0.2) == 0.0
    assert background_level(s, np.zeros(N, bool))[0] == 0.0


def test_nan_noise_and_min_prominence():
    s = gaussian_profile([-100.0, 30.0], [0.5, 2.0])
    sigma = SIGMA.copy()
    sigma[np.argmax(np.where(PHI < 0, s, -1))] = np.nan  # no threshold: no peak
    for prom in (0.0, 1.0, 3.0):
        mine = compiled_peaks(s, sigma, min_prominence=prom)
        assert_same(mine, reference_peaks(s, sigma, min_prominence=prom))
    assert [round(p[0]) for p in compiled_peaks(s, sigma)] == [30]
    assert compiled_peaks(s, sigma, min_prominence=3.0) == []


def test_random_smoothed_profiles_match_the_reference():
    rng = np.random.default_rng(5)
    n_pix = np.full(N, 30)
    checked = 0
    for trial in range(60):
        centres = rng.uniform(-180, 180, rng.integers(0, 6))
        lam = gaussian_profile(centres, rng.uniform(0.1, 3.0, centres.size), rng.uniform(0.8, 6.0), 0.5)
        counts = rng.poisson(lam * n_pix) / n_pix
        weight = np.ones(N)
        if trial % 3 == 0:  # a masked gap somewhere
            start = rng.integers(0, N)
            weight[np.arange(start, start + rng.integers(1, 30)) % N] = 0.0
        smooth = rng.choice([0.0, 1.0, 2.0])
        sm = smooth_profiles(np.where(weight > 0, counts, np.nan), weight, n_pix, smooth)
        s = np.where(sm.valid, sm.value, np.nan)
        for window in (5.0, 15.0, 40.0):
            snr = rng.choice([3.0, 7.0])
            mine = [tuple(p) for p in detect_peaks(PHI, sm, smooth, snr, window)]
            assert_same(mine, reference_peaks(s, sm.sigma, smooth, snr, window))
            checked += len(mine)
    assert checked > 100


def test_per_profile_parameters_and_layouts():
    a = gaussian_profile([20.0], [2.0])
    b = gaussian_profile([-100.0, 60.0], [2.0, 0.3])
    prof = np.stack([np.stack([a, b]), np.stack([b, a])])  # (frames, rings, N)
    sigma = np.full(prof.shape, 0.02)
    search = PeakSearch(prof.shape[:-1], N, [1.0, 2.0], [7.0, 20.0], [15.0, 4.0])
    out = search.find(PHI, SmoothedProfiles(prof, sigma, np.ones(prof.shape, bool)))
    for f in range(2):
        for r, (smooth, snr, window) in enumerate([(1.0, 7.0, 15.0), (2.0, 20.0, 4.0)]):
            assert_same([tuple(p) for p in out[f][r]], reference_peaks(prof[f, r], sigma[f, r], smooth, snr, window))
    assert [[len(r) for r in f] for f in out] == [[1, 1], [2, 1]]
    with pytest.raises(ValueError, match="layout"):
        search.find(PHI, SmoothedProfiles(prof[0], sigma[0], np.ones((2, N), bool)))


def test_quantile_level_equals_background_level():
    rng = np.random.default_rng(2)
    buffer = np.empty(N)
    for trial in range(100):
        s = rng.normal(1.0, 1.0, N)
        if trial % 2:
            s = np.round(2.0 * s)  # many ties
        valid = rng.random(N) > rng.uniform(0, 0.9)
        ref = background_level(s, valid)[0]
        assert quantile_level(np.where(valid, s, np.nan), buffer, 0.2) == ref
