"""Compiled per-frame steps of :class:`~mc_beamline.analysis.xcca.frame.XccaFrameEngine` (numba).

The engine's work per frame after the ring gather is a handful of passes over arrays of a
few hundred bins. As NumPy expressions each pass is several calls of a few microseconds
of dispatch; here each group of passes is one compiled loop:

* :func:`static_profiles` -- segment sums (frames, rings, radial slices, N) to the
  q-corrected ring profiles, the weighted profiles x = W·I and the ring means, for frames
  without bad pixels of their own (see :class:`~mc_beamline.analysis.detector.polar.RingProfiles`);
* :func:`spectrum_products` -- from the rFFT of x, the cross spectra of the CCF pairs and
  the spectra of the smoothed profiles, ready for one inverse FFT;
* :func:`finish_frames` -- from that inverse FFT, the normalised mask-corrected CCFs in Δ
  order, the smoothed profiles, their background level and noise, and the ring peaks.

The FFTs stay in NumPy (pocketfft). Intensities in counts per pixel; angles in degrees.
"""

from __future__ import annotations

import numba
import numpy as np

from mc_beamline.analysis.xcca.peak_kernels import (
    BACKGROUND_QUANTILE,
    quantile_level,
    row_peaks,
)

_JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


@numba.njit(inline="always", **_JIT)
def _row_sum(row) -> float:
    """Σ row with four interleaved partial sums (not one chain of dependent additions)."""
    a0 = a1 = a2 = a3 = 0.0
    n4 = row.size - row.size % 4
    for k in range(0, n4, 4):
        a0 += row[k]
        a1 += row[k + 1]
        a2 += row[k + 2]
        a3 += row[k + 3]
    for k in range(n4, row.size):
        a0 += row[k]
    return (a0 + a1) + (a2 + a3)


@numba.njit(**_JIT)
def static_profiles(sums, inv_slice_n, n_sub, inv_ring_n, weight, empty, w_sum, mean, x, ring_mean):
    """Ring profiles of frames whose good pixels are the static ones.

    ``sums`` (F, R, S, N): segment sums; ``inv_slice_n`` (R, S): 1 / good pixels of each
    radial slice (0 for an empty slice); ``n_sub`` (R, S, N): good pixels per segment;
    ``inv_ring_n`` (R,): 1 / good pixels of each ring; ``weight`` (R, N) and ``empty`` (R, N):
    bin weights W and bins without good pixel; ``w_sum`` (R,): ΣW.
    Writes ``mean`` (F, R, N; NaN in empty bins), ``x`` = W·mean (0 in empty bins) and
    ``ring_mean`` (F, R) = Σx / ΣW.
    """
    n_frames, n_rings, n_slices, n = sums.shape
    bin_sum = np.empty(n)
    expected = np.empty(n)
    for f in range(n_frames):
        for r in range(n_rings):
            seg = sums[f, r]
            total = 0.0
            bin_sum[:] = 0.0
            expected[:] = 0.0
            for j in range(n_slices):
                s = _row_sum(seg[j])
                total += s
                slice_mean = s * inv_slice_n[r, j]  # the ring's radial profile R_j
                for k in range(n):
                    bin_sum[k] += seg[j, k]
                    expected[k] += slice_mean * n_sub[r, j, k]
            ring_px = total * inv_ring_n[r]
            acc = 0.0
            for k in range(n):
                m = bin_sum[k] * (ring_px / max(expected[k], 1e-300))
                mean[f, r, k] = np.nan if empty[r, k] else m
                xv = m * weight[r, k]
                x[f, r, k] = xv
                acc += xv
            ring_mean[f, r] = acc / w_sum[r]


@numba.njit(**_JIT)
def spectrum_products(x_hat, g_hat, pair_i, pair_j, prod):
    """``prod[f, p] = conj(x̂[f, i_p])·x̂[f, j_p]`` (CCF pairs), ``prod[f, P + r] = x̂[f, r]·ĝ_r``."""
    n_frames, n_rings, m = x_hat.shape
    n_pairs = pair_i.size
    for f in range(n_frames):
        for p in range(n_pairs):
            a = x_hat[f, pair_i[p]]
            b = x_hat[f, pair_j[p]]
            for k in range(m):
                prod[f, p, k] = a[k].conjugate() * b[k]
        for r in range(n_rings):
            for k in range(m):
                prod[f, n_pairs + r, k] = x_hat[f, r, k] * g_hat[r, k]


@numba.njit(**_JIT)
def finish_frames(
    back, order, inv_den, pair_i, pair_j, ring_mean, inv_cov, var_a, var_b,
    min_snr, half, h_max, smooth_bins, phi0_deg, width_deg, out, table, counts,
):
    """CCFs, smoothed profiles and peaks from the inverse FFT ``back`` (F, P + R, N).

    ``back[:, :P]`` holds the CCF numerators over lags, ``back[:, P:]`` the smoothed
    numerators g ∗ x. Mask terms (leading axis F, or 1 for all frames): ``inv_den`` (·, P, N)
    1/(N·denominator) in Δ order (NaN where undefined); ``inv_cov`` (·, R, N) 1/(g ∗ W), NaN
    where the smoothed bin is invalid; ``var_a``, ``var_b`` (·, R, N) g² ∗ (W²/n) and
    g² ∗ (W²/n²). ``order`` (N,): lag index of each Δ. Peak parameters per ring (R,).

    Writes ``out`` (F, P + 2R, N): the normalised CCFs C̃/(<I_i><I_j>) - 1, the smoothed
    profiles S (NaN where invalid) and their noise σ_S = sqrt(L·var_a + var_b)·inv_cov at
    the background level L; ``table`` (F, R, ≥ N//2, 5) and ``counts`` (F, R): the peaks.
    """
    n_frames = back.shape[0]
    n_pairs = pair_i.size
    n_rings = inv_cov.shape[1]
    n = back.shape[2]
    buffer = np.empty(n)
    for f in range(n_frames):
        fm = f if inv_cov.shape[0] > 1 else 0
        for p in range(n_pairs):
            norm = ring_mean[f, pair_i[p]] * ring_mean[f, pair_j[p]]
            for d in range(n):
                out[f, p, d] = back[f, p, order[d]] * (inv_den[fm, p, d] / norm) - 1.0
        for r in range(n_rings):
            s = out[f, n_pairs + r]
            sig = out[f, n_pairs + n_rings + r]
            for k in range(n):
                s[k] = back[f, n_pairs + r, k] * inv_cov[fm, r, k]
            level = quantile_level(s, buffer, BACKGROUND_QUANTILE)
            for k in range(n):
                sig[k] = np.sqrt(level * var_a[fm, r, k] + var_b[fm, r, k]) * inv_cov[fm, r, k]
            counts[f, r] = row_peaks(
                s, sig, min_snr[r], -np.inf, half[r], h_max, smooth_bins[r], phi0_deg, width_deg, table[f, r]
            )
