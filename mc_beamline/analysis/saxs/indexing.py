"""Bragg peaks in 1D SAXS curves and their indexing to a superlattice.

Peak search (:func:`find_bragg_peaks`). Bragg peaks of a supercrystal are narrow on top of
a slowly varying curve (form factor × diffuse structure factor) that spans decades. A
smooth version of ln I under its narrow positive excursions (Gaussian smoothing over
``envelope_width`` in ln q, i.e. a relative width in q, with points more than 1 σ above
it clipped, iterated) is the baseline B(q). Maxima of the residual I − B that
stand ``min_snr`` σ above zero, whose prominence is at least ``min_contrast`` × B and
``min_snr`` σ, at least two bins wide and narrower than ``max_rel_fwhm`` · q (full width
at half maximum of the residual) are Bragg peaks; their
positions are refined by a Gaussian with a linear background fitted over ±1 FWHM.
σ is the curve's own uncertainty, or estimated from the scatter of the data.

Indexing (:func:`index_peaks`). Candidate lattices and their reflections (q for a
conventional lattice constant a, extinct reflections left out):

* ``fcc`` (h, k, l all even or all odd), ``bcc`` (h + k + l even), ``sc``;
* ``hcp`` (ideal c/a = 1.633; no l odd with h − k ≡ 0 mod 3);
* ``bct`` (body-centred tetragonal, c/a fitted; c/a = 1 is bcc and √2 is fcc);
* ``hex`` (simple hexagonal, the lattice of AlB2-type binary superlattices; c/a fitted);
* ``lamellar`` (q_n = 2π n / d; ``a_nm`` is d).

For every lattice, hypotheses "observed peak i is reflection j" fix a; the assignment of
all peaks to their nearest reflection and a (and c/a) are refined by least squares on q²,
which is linear in 1/a² and 1/c². The cost of a hypothesis is

    Σ_i min((ε_i / σ_ε)², U)  +  M · Σ_missing w_j  +  P · (number of free parameters)
                              [ +  Σ_i ρ_i min((r_i / σ_I)², K) ]

with ε_i = q_obs,i / q_calc,i − 1 (``position_sigma`` σ_ε), U the price of an observed peak
no reflection explains (|ε| > ``tol``) or explains only by chance (its reflection's
neighbours closer than 4 max(|ε|, σ_ε): at high order reflections crowd and any position
is near one); a peak whose half width covers two or more reflections is their unresolved
blend (the broadened high orders of a paracrystal) and costs nothing. w_j ≤ 1 is the
relative strength (m|F|²/q², normalised to the median matched reflection; every lamellar
order weighs 1) of every reflection between the low end of the measured q range and the
last observed peak that no observed peak is within ``tol`` (or its FWHM) of, times the
reliability of the most reliable peak explained (not by chance) at or above it (the
orders of a paracrystal fade with q). The bracketed term is used where the peaks'
integrated intensities on a structure factor are known (``peak_area``): r_i =
ln(area_i / Σ m|F|²/q² of the reflections the peak covers) − (c − B q_i²), with c and the
fade B ≥ 0 fitted, over the peaks that are evidence, ρ_i their reliability, σ_I
:data:`INTENSITY_SIGMA`, K :data:`INTENSITY_CAP`: positions alone cannot tell sc from bcc
below the bcc 321 (both have reflections at √1…√6 × q₁), intensities can (sc's √2
reflection, 110, is as strong as its first; bcc's, 200, a quarter).

The lattice of least cost wins if it explains at least ``min_peaks`` peaks (2 for
lamellar), leaves at most ``max_unmatched`` unexplained (with one free parameter: one more
per :data:`MATCHED_PER_STRAY_PEAK` peaks it explains not by chance), and its missing
reflections weigh at most :data:`MAX_MISSING_PER_MATCHED` per matched
peak (½ for one free parameter, ⅓ for two); otherwise
the answer is "no lattice" (``None``). The goodness of fit is the rms of ε over matched
peaks, with the counts of matched, unmatched and missing reflections.

Units: q in nm⁻¹, a and d in nm.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter
from scipy.optimize import curve_fit
from scipy.signal import find_peaks, peak_widths

LATTICES = ("fcc", "bcc", "sc", "hcp", "bct", "hex", "lamellar")
"""Lattices :func:`index_peaks` tries."""
IDEAL_HCP_C_OVER_A = math.sqrt(8.0 / 3.0)
MAX_INDEXED_PEAKS = 30
""":func:`index_curve` indexes at most this many peaks, the most significant ones."""
MAX_MISSING_PER_MATCHED = {1: 0.5, 2: 0.34}
"""An accepted lattice leaves (strength-weighted) at most this many predicted reflections
unobserved per observed peak it explains, by its number of free parameters (a lattice
with a free c/a fits more peak lists by chance and must explain them better)."""
MATCHED_PER_STRAY_PEAK = 8
"""A lattice with one free parameter that explains this many peaks by resolved reflections
(not by chance) may leave one more unexplained (a second phase, an impurity, a reflection
split by the orientation average) than ``max_unmatched`` of :func:`index_peaks`; per
further multiple of it, one more. (A free c/a fits long peak lists with one peak left
over by chance.)"""
_N_PARAMS = {"fcc": 1, "bcc": 1, "sc": 1, "hcp": 1, "lamellar": 1, "bct": 2, "hex": 2}
CUBIC_BCT_TOL = 0.02
"""A bct fit whose c/a is within this relative distance of 1 (bcc) or √2 (fcc) is not
accepted: the cubic lattice, with one parameter less, is the answer."""
FULL_VISIBILITY = 0.3
"""A reflection where the form factor keeps at least this share of its envelope is fully
expected (see ``visibility`` of :func:`index_peaks`)."""
INTENSITY_SIGMA = 0.5
"""Scatter (in ln) allowed between an observed peak's integrated intensity on S(q) and its
lattice's prediction m|F|²/q² (with a fitted fade exp(−B q²)): peak areas are measured
from a Gaussian on a slope, paracrystal peaks are not Gaussians."""
INTENSITY_CAP = 4.0
"""Largest intensity misfit (r/σ)² one peak adds to the cost."""
_PREFERENCE = {"fcc": 0, "bcc": 1, "hcp": 2, "sc": 3, "lamellar": 4, "bct": 5, "hex": 6}
"""Tie-break order (equal cost): the common NC superlattices first."""


# ----------------------------------------------------------------------- peaks
@dataclass(frozen=True)
class BraggPeak:
    """A narrow peak in a SAXS curve.

    Attributes
    ----------
    q_nm : refined position, nm⁻¹.
    height : height above the baseline (intensity units).
    fwhm_nm : full width at half maximum, nm⁻¹.
    snr : height over the noise σ at the peak.
    """

    q_nm: float
    height: float
    fwhm_nm: float
    snr: float


def _noise(intensity: np.ndarray, window: int = 31) -> np.ndarray:
    i = np.asarray(intensity, dtype=float)
    d2 = np.empty_like(i)
    d2[1:-1] = (i[:-2] - 2.0 * i[1:-1] + i[2:]) / math.sqrt(6.0)
    d2[0], d2[-1] = d2[1], d2[-2]
    s = 1.4826 * median_filter(np.abs(d2), size=min(window, max(3, i.size // 2 * 2 - 1)), mode="nearest")
    return np.maximum(s, max(float(np.median(s)) * 0.05, np.finfo(float).tiny))


def smooth_baseline(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None,
                    envelope_width: float = 0.06) -> np.ndarray:
    """Smooth baseline of a SAXS curve under its narrow peaks, same units as I.

    ln I is smoothed by a Gaussian of σ = ``envelope_width`` in ln q (0.06: 6 % of q), and
    points more than 1 σ(ln I) above the running estimate are clipped to it, ten times
    over: the baseline follows the curve through its noise and under peaks narrower than
    the smoothing.
    """
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    s = _noise(i) if sigma is None else np.asarray(sigma, dtype=float)
    positive = i[i > 0]
    floor = float(np.percentile(positive, 1)) * 0.1 if positive.size else 1.0
    ic = np.maximum(i, floor)
    y = np.log(ic)
    s_log = np.clip(s / ic, 1e-6, 2.0)
    u = np.log(q)
    yc = y.copy()
    base = y
    for _ in range(10):
        num = np.empty_like(y)
        den = np.empty_like(y)
        for lo in range(0, q.size, 1024):
            k = np.exp(-0.5 * ((u[lo : lo + 1024, None] - u[None, :]) / envelope_width) ** 2)
            num[lo : lo + 1024] = k @ yc
            den[lo : lo + 1024] = k.sum(axis=1)
        base = num / den
        yc = np.minimum(y, base + s_log)
    return np.exp(base)


def _gauss_line(x, amp, mu, sig, c0, c1):
    return amp * np.exp(-0.5 * ((x - mu) / sig) ** 2) + c0 + c1 * (x - mu)


def find_bragg_peaks(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None, *,
                     min_snr: float = 5.0, min_contrast: float = 0.05, max_rel_fwhm: float = 0.08,
                     envelope_width: float = 0.06) -> list[BraggPeak]:
    """Narrow (Bragg) peaks of a SAXS curve, by increasing q.

    Parameters
    ----------
    q_nm, intensity, sigma : the curve; q in nm⁻¹ increasing, σ optional.
    min_snr : a peak stands this many σ above the baseline.
    min_contrast : and at least this fraction of the baseline.
    max_rel_fwhm : a Bragg peak is narrower than this fraction of its q (broad fluid
        correlation peaks and form-factor maxima are not Bragg peaks).
    envelope_width : smoothing of the baseline, σ in ln q.
    """
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    s = _noise(i) if sigma is None else np.maximum(np.asarray(sigma, dtype=float), 1e-300)
    base = smooth_baseline(q, i, s, envelope_width)
    resid = i - base
    # a light smoothing (≈ one bin) against single-bin noise spikes
    smooth = gaussian_filter1d(resid, 0.7, mode="nearest")
    s_smooth = s / math.sqrt(2.0)
    snr = smooth / s_smooth
    # significance is the prominence in units of σ: noise riding on a broad excess of the
    # curve over the baseline has little prominence
    idx, props = find_peaks(snr, height=min_snr, prominence=min_snr)
    if idx.size == 0:
        return []
    # contrast: the prominence of the peak itself, not the excess of the curve it sits on
    prom = props["prominences"] * s_smooth[idx]
    idx = idx[prom >= min_contrast * base[idx]]
    if idx.size == 0:
        return []
    widths, _, left, right = peak_widths(snr, idx, rel_height=0.5)
    qi = np.arange(q.size, dtype=float)
    peaks = []
    for k, w, lo, hi in zip(idx, widths, left, right):
        q_lo, q_hi = np.interp(lo, qi, q), np.interp(hi, qi, q)
        fwhm = q_hi - q_lo
        if fwhm > max_rel_fwhm * q[k] or w < 2.0:  # broad humps and one-bin noise are not Bragg peaks
            continue
        peaks.append(_refine(q, resid, s, k, max(fwhm, q[min(k + 1, q.size - 1)] - q[max(k - 1, 0)]), snr[k]))
    return sorted([p for p in peaks if p is not None], key=lambda p: p.q_nm)


def find_structure_peaks(q_nm: np.ndarray, s_q: np.ndarray, sigma: np.ndarray, visibility: np.ndarray | None = None, *,
                         min_snr: float = 5.0, min_prominence: float = 0.1, max_rel_fwhm: float = 0.08,
                         min_visibility: float = 0.15) -> list[BraggPeak]:
    """Bragg peaks of a structure factor S(q) = I / P (about 1 away from peaks), by increasing q.

    Maxima of S (smoothed over ≈ one bin) whose prominence is at least ``min_prominence``
    (absolute, S is dimensionless) and ``min_snr`` σ_S, at least two bins and at most
    ``max_rel_fwhm`` · q wide (FWHM at half prominence), are refined like
    :func:`find_bragg_peaks` (Gaussian on a straight line). Where the form factor is in a
    minimum (``visibility`` < ``min_visibility``, see
    :meth:`~mc_beamline.analysis.saxs.form_factor.SphereFit.visibility`) S is the ratio of
    two small numbers and its maxima are not peaks. ``height`` is the prominence in S.
    """
    q = np.asarray(q_nm, dtype=float)
    y = np.asarray(s_q, dtype=float)
    sig = np.maximum(np.asarray(sigma, dtype=float), 1e-300)
    smooth = gaussian_filter1d(y, 0.7, mode="nearest")
    idx, props = find_peaks(smooth, prominence=min_prominence)
    if idx.size == 0:
        return []
    prom = props["prominences"]
    ok = prom >= min_snr * sig[idx] / math.sqrt(2.0)
    if visibility is not None:
        ok &= np.asarray(visibility, dtype=float)[idx] >= min_visibility
    idx, prom = idx[ok], prom[ok]
    if idx.size == 0:
        return []
    widths, _, left, right = peak_widths(smooth, idx, rel_height=0.5)
    qi = np.arange(q.size, dtype=float)
    peaks = []
    for k, w, lo, hi, pr in zip(idx, widths, left, right, prom):
        fwhm = float(np.interp(hi, qi, q) - np.interp(lo, qi, q))
        if fwhm > max_rel_fwhm * q[k] or w < 2.0:
            continue
        p = _refine(q, y, sig, k, max(fwhm, q[min(k + 1, q.size - 1)] - q[max(k - 1, 0)]),
                    float(pr / (sig[k] / math.sqrt(2.0))))
        if p is not None:
            peaks.append(BraggPeak(p.q_nm, float(pr), p.fwhm_nm, p.snr))
    return sorted(peaks, key=lambda p: p.q_nm)


def _refine(q, resid, s, k, fwhm, snr) -> BraggPeak | None:
    lo = np.searchsorted(q, q[k] - 1.2 * fwhm)
    hi = np.searchsorted(q, q[k] + 1.2 * fwhm, side="right")
    x, y, e = q[lo:hi], resid[lo:hi], s[lo:hi]
    sig0 = fwhm / 2.3548
    if x.size >= 6:
        try:
            popt, _ = curve_fit(_gauss_line, x, y, p0=[resid[k], q[k], sig0, 0.0, 0.0], sigma=e,
                                bounds=([0, q[k] - fwhm, sig0 / 5, -np.inf, -np.inf],
                                        [np.inf, q[k] + fwhm, sig0 * 3, np.inf, np.inf]), maxfev=2000)
            if abs(popt[1] - q[k]) <= 0.75 * fwhm:
                return BraggPeak(float(popt[1]), float(popt[0]), float(2.3548 * popt[2]), float(snr))
        except (RuntimeError, ValueError):
            pass
    # parabola through the three top points
    if 0 < k < q.size - 1:
        a, b, c = resid[k - 1 : k + 2]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        pos = q[k] + float(np.clip(shift, -1, 1)) * (q[k + 1] - q[k - 1]) / 2
    else:
        pos = q[k]
    return BraggPeak(float(pos), float(resid[k]), float(fwhm), float(snr))


# ----------------------------------------------------------------------- lattices
def _cell(lattice: str, c_over_a: float) -> tuple[np.ndarray, np.ndarray]:
    if lattice in ("fcc", "bcc", "sc"):
        basis = {"fcc": [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
                 "bcc": [(0, 0, 0), (0.5, 0.5, 0.5)], "sc": [(0, 0, 0)]}[lattice]
        return np.eye(3), np.array(basis, float)
    if lattice == "bct":
        return np.diag([1.0, 1.0, c_over_a]), np.array([(0, 0, 0), (0.5, 0.5, 0.5)], float)
    if lattice in ("hcp", "hex"):
        cell = np.array([[1.0, 0, 0], [-0.5, math.sqrt(3) / 2, 0], [0, 0, c_over_a]])
        basis = [(0, 0, 0), (1 / 3, 2 / 3, 0.5)] if lattice == "hcp" else [(0, 0, 0)]
        return cell, np.array(basis, float)
    raise ValueError(f"Unknown lattice {lattice!r}.")


@dataclass(frozen=True)
class Reflections:
    """Distinct reflections of a lattice with a = 1 nm: q (nm⁻¹), strength m|F|²/q², hkl,
    and the coefficients (A_j, C_j) with q_j² = A_j / a² + C_j / c² (c = a for cubic)."""

    g: np.ndarray
    strength: np.ndarray
    hkl: np.ndarray
    coef_a: np.ndarray
    coef_c: np.ndarray


_TABLES: dict[str, tuple] = {}


def _table(lattice: str, n_ab: int, n_c: int):
    """The distinct (A, C) of :func:`_hkl_table` for |h|, |k| ≤ at least ``n_ab`` and |l| ≤
    at least ``n_c``, sorted by increasing A: the summed |F|² of each and its
    representative hkl (non-negative indices first, then descending h, k, l). q² = A + C /
    (c/a)² depends on hkl only through (A, C), so this serves every c/a. The largest table
    made is kept; it grows by half beyond the need."""
    have = _TABLES.get(lattice)
    if have is None or have[0] < n_ab or have[1] < n_c:
        n_ab = math.ceil(1.5 * max(n_ab, have[0] if have else 0))
        n_c = math.ceil(1.5 * max(n_c, have[1] if have else 0))
        hkl, f2, coef_a, coef_c = _hkl_table(lattice, n_ab, n_c)
        # A and C are integers times (2π)² (hexagonal A: times (2π)²/3)
        ka = np.rint(coef_a * 3.0 / (2 * math.pi) ** 2).astype(np.int64)
        kc = np.rint(coef_c / (2 * math.pi) ** 2).astype(np.int64)
        _, first, inv = np.unique(ka * (int(kc.max()) + 1) + kc, return_index=True, return_inverse=True)
        pairs = np.stack([coef_a[first], coef_c[first]], axis=1)
        f2_sum = np.bincount(inv, weights=f2)
        order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], ~(hkl >= 0).all(axis=1), inv))
        rep = hkl[order[np.r_[True, inv[order][1:] != inv[order][:-1]]]]
        by_a = np.argsort(pairs[:, 0], kind="stable")
        arrays = (np.ascontiguousarray(rep[by_a]), f2_sum[by_a], np.ascontiguousarray(pairs[by_a, 0]),
                  np.ascontiguousarray(pairs[by_a, 1]))
        for arr in arrays:
            arr.setflags(write=False)
        have = (n_ab, n_c, arrays)
        _TABLES[lattice] = have
    return have[2]


def _hkl_table(lattice: str, n_ab: int, n_c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All (h, k, l) with |h|, |k| ≤ n_ab, |l| ≤ n_c and non-zero structure factor; their
    |F|² and the coefficients (A, C) of q² = A + C / (c/a)² for a = 1 nm."""
    h, k, l = np.meshgrid(np.arange(-n_ab, n_ab + 1), np.arange(-n_ab, n_ab + 1), np.arange(-n_c, n_c + 1),
                          indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], axis=1)
    hkl = hkl[(hkl != 0).any(axis=1)]
    _, basis = _cell(lattice, 1.0)
    f2 = np.abs(np.exp(2j * math.pi * hkl @ basis.T).sum(axis=1)) ** 2
    ok = f2 > 1e-6
    hkl, f2 = hkl[ok], f2[ok]
    two_pi2 = (2 * math.pi) ** 2
    if lattice in ("hcp", "hex"):
        coef_a = two_pi2 * 4.0 / 3.0 * (hkl[:, 0] ** 2 + hkl[:, 0] * hkl[:, 1] + hkl[:, 1] ** 2)
        coef_c = two_pi2 * hkl[:, 2] ** 2
    elif lattice == "bct":
        coef_a = two_pi2 * (hkl[:, 0] ** 2 + hkl[:, 1] ** 2)
        coef_c = two_pi2 * hkl[:, 2] ** 2
    else:
        coef_a = two_pi2 * (hkl**2).sum(axis=1)
        coef_c = np.zeros(hkl.shape[0])
    return hkl, f2, coef_a.astype(float), coef_c.astype(float)


def reflections(lattice: str, g_max: float, c_over_a: float | None = None) -> Reflections:
    """Reflections of ``lattice`` with a = 1 nm up to q = ``g_max`` nm⁻¹ (q scales as 1/a)."""
    if lattice == "lamellar":
        n = np.arange(1, int(g_max / (2 * math.pi)) + 1, dtype=float)
        g = 2 * math.pi * n
        return Reflections(g, np.ones_like(n), np.stack([np.zeros_like(n), np.zeros_like(n), n], 1).astype(int),
                           np.zeros_like(n), (2 * math.pi * n) ** 2)
    if lattice not in _N_PARAMS:
        raise ValueError(f"Unknown lattice {lattice!r}; use one of {', '.join(LATTICES)}.")
    ca = (IDEAL_HCP_C_OVER_A if lattice == "hcp" else 1.0) if c_over_a is None else float(c_over_a)
    # computed up to the next multiple of π and kept: the indexing asks for the same
    # lattices and c/a grid over and over
    full = _reflections_upto(lattice, math.pi * math.ceil(g_max / math.pi), ca)
    n = int(np.searchsorted(full.g, g_max, side="right"))
    return Reflections(full.g[:n], full.strength[:n], full.hkl[:n], full.coef_a[:n], full.coef_c[:n])


@functools.lru_cache(maxsize=4096)
def _reflections_upto(lattice: str, g_max: float, ca: float) -> Reflections:
    n_ab = int(math.ceil(g_max / (2 * math.pi) * (2 / math.sqrt(3) if lattice in ("hcp", "hex") else 1.0))) + 1
    n_c = n_ab if lattice in ("fcc", "bcc", "sc") else int(math.ceil(g_max * ca / (2 * math.pi))) + 1
    hkl, f2, coef_a, coef_c = _table(lattice, max(n_ab, 8), max(n_c, 8))
    n = int(np.searchsorted(coef_a, g_max**2 * (1 + 1e-9), side="right"))  # q² ≥ A
    hkl, f2, coef_a, coef_c = hkl[:n], f2[:n], coef_a[:n], coef_c[:n]
    g = np.sqrt(coef_a + coef_c / ca**2)
    keep = g <= g_max
    hkl, f2, g, coef_a, coef_c = hkl[keep], f2[keep], g[keep], coef_a[keep], coef_c[keep]
    uniq, inv = np.unique(np.round(g, 9), return_inverse=True)
    strength = np.bincount(inv, weights=f2) / uniq**2
    # a representative per reflection: non-negative indices first, then descending h, k, l
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], ~(hkl >= 0).all(axis=1), inv))
    first = order[np.r_[True, inv[order][1:] != inv[order][:-1]]]
    out = Reflections(uniq, strength, hkl[first], coef_a[first], coef_c[first])
    for arr in (out.g, out.strength, out.hkl, out.coef_a, out.coef_c):
        arr.setflags(write=False)
    return out


# ----------------------------------------------------------------------- indexing
@dataclass(frozen=True)
class LatticeFit:
    """One indexing of the observed peaks.

    Attributes
    ----------
    lattice : lattice name (see :data:`LATTICES`).
    a_nm : lattice constant (conventional cell; d of a lamellar phase), nm.
    c_over_a : c/a (bct, hcp, hex), else None.
    peaks_q_nm : observed peak positions, nm⁻¹.
    hkl : assigned reflection of each observed peak (None where unexplained or a blend).
    rms_rel_error : rms of q_obs / q_calc − 1 over the matched peaks (goodness of fit).
    n_matched, n_unmatched : observed peaks explained / not explained (peaks of
        reliability < ½, see :func:`index_peaks`, and blends of several reflections
        within their half width are not counted as unexplained).
    missing : strength-weighted count of predicted reflections not observed.
    cost : the score minimised (lower is better).
    a_err_nm : standard error of a, nm (see :func:`lattice_errors`).
    c_over_a_err : standard error of c/a (None where c/a is not fitted).
    score : n_matched / (n_matched + n_unmatched + missing), 1 for a perfect indexing.
    n_resolved : matched peaks whose reflection is resolved from its neighbours (matched
        not by chance, see :func:`index_peaks`).
    """

    lattice: str
    a_nm: float
    c_over_a: float | None
    peaks_q_nm: tuple[float, ...]
    hkl: tuple[tuple[int, int, int] | None, ...]
    rms_rel_error: float
    n_matched: int
    n_unmatched: int
    missing: float
    cost: float
    a_err_nm: float = float("nan")
    c_over_a_err: float | None = None
    score: float = float("nan")
    n_resolved: int = 0

    def as_dict(self) -> dict:
        return {"lattice": self.lattice, "a_nm": self.a_nm, "c_over_a": self.c_over_a,
                "peaks_q_nm": list(self.peaks_q_nm),
                "hkl": [list(h) if h is not None else None for h in self.hkl],
                "rms_rel_error": self.rms_rel_error, "n_matched": self.n_matched,
                "n_unmatched": self.n_unmatched, "missing": self.missing, "a_nm_err": self.a_err_nm,
                "c_over_a_err": self.c_over_a_err, "score": self.score}


@dataclass(frozen=True)
class IndexingResult:
    """Outcome of :func:`index_peaks`: the accepted fit (None: no lattice), every
    lattice's best fit by increasing cost, and why a lattice was or was not accepted."""

    best: LatticeFit | None
    candidates: tuple[LatticeFit, ...] = field(default_factory=tuple)
    reason: str = ""


def _refine_params(lattice, refl, j_assigned, q_obs, ca):
    """Least squares of q² = A/a² + C/c² over the assigned reflections (relative weights)."""
    a_coef = refl.coef_a[j_assigned]
    c_coef = refl.coef_c[j_assigned]
    y = q_obs**2
    w = 1.0 / y  # relative error in q² ≈ 2 ε
    if lattice in ("bct", "hex") and np.count_nonzero(c_coef) >= 1 and np.count_nonzero(a_coef) >= 1 \
            and len(q_obs) >= 3:
        m = np.stack([a_coef, c_coef], axis=1) * w[:, None]
        sol, *_ = np.linalg.lstsq(m, y * w, rcond=None)
        if sol[0] > 0 and sol[1] > 0:
            a = 1.0 / math.sqrt(sol[0])
            c = 1.0 / math.sqrt(sol[1])
            return a, c / a
    if lattice in ("hcp", "hex", "bct"):
        tot = a_coef + c_coef / ca**2
    elif lattice == "lamellar":
        tot = c_coef
    else:
        tot = a_coef
    inv_a2 = float(np.sum(tot * y * w * w) / np.sum(tot * tot * w * w))
    return 1.0 / math.sqrt(inv_a2), ca


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of each row of ``values`` over its ``mask``ed entries (1 where none)."""
    srt = np.sort(np.where(mask, values, np.inf), axis=1)
    n = mask.sum(axis=1)
    rows = np.arange(values.shape[0])
    lo = srt[rows, np.maximum((n - 1) // 2, 0)]
    hi = srt[rows, np.maximum(n // 2, 0)]
    return np.where(n > 0, 0.5 * (lo + hi), 1.0)


def _intensity_misfit(refl, absr, reach, q_obs, weight, observed):
    """Per hypothesis: Σ weight · min((r / σ)², cap) of r = ln(observed / predicted) − (c −
    B q²), c and B ≥ 0 fitted by weighted least squares (see :data:`INTENSITY_SIGMA`).
    ``absr`` (H, P, R) are the relative distances of the peaks to the reflections, ``reach``
    how far a peak gathers reflections (its unresolved blend), ``weight`` (H, P) the
    weight of each peak (0: not evidence for the hypothesis)."""
    pred = np.sum(np.where(absr <= reach, refl.strength[None, None, :], 0.0), axis=2)  # (H, P)
    y = np.log(observed)[None, :] - np.log(np.maximum(pred, 1e-300))
    x = np.broadcast_to(q_obs**2, y.shape)
    w = np.where(pred > 0, weight, 0.0)
    sw = np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    x_m = np.sum(w * x, axis=1, keepdims=True) / sw
    y_m = np.sum(w * y, axis=1, keepdims=True) / sw
    sxx = np.sum(w * (x - x_m) ** 2, axis=1, keepdims=True)
    sxy = np.sum(w * (x - x_m) * (y - y_m), axis=1, keepdims=True)
    fade = np.maximum(-sxy / np.maximum(sxx, 1e-300), 0.0)  # B ≥ 0: orders fade, never grow
    r = y - (y_m + fade * x_m) + fade * x
    return np.sum(w * np.minimum((r / INTENSITY_SIGMA) ** 2, INTENSITY_CAP), axis=1)


def _evaluate(lattice, refl, a, q_obs, q_lo, q_hi, tol, sigma_eps, unmatched_cost, missing_cost, fwhm=None,
              reliability=None, visibility=None, peak_area=None):
    """Score lattice constants ``a`` (array of hypotheses) given the reflections ``refl`` of
    a = 1 (enough of them). Returns per hypothesis: assigned reflection of each peak, ε,
    matched flags, evidence flags (matched by a resolved reflection, not by chance), blend
    flags (unmatched peaks whose half width covers several reflections), weighted missing
    count and cost."""
    a = np.atleast_1d(np.asarray(a, dtype=float))
    g = refl.g[None, :] / a[:, None]  # (H, R)
    ratio = q_obs[None, :, None] / g[:, None, :] - 1.0  # (H, P, R)
    absr = np.abs(ratio)
    j = np.argmin(absr, axis=2)  # (H, P)
    eps = np.take_along_axis(ratio, j[..., None], axis=2)[..., 0]
    matched = np.abs(eps) <= tol
    # (H, R): an observed peak within tol, or within its own FWHM (unresolved neighbours)
    reach = tol if fwhm is None else np.maximum(tol, fwhm / q_obs)[None, :, None]
    near = np.any(absr <= reach, axis=1)
    in_range = (g >= q_lo * (1 + tol)) & (g <= q_hi)
    miss = in_range & ~near
    strength = refl.strength[j]  # (H, P)
    s_ref = _masked_median(strength, matched)
    w_miss = np.minimum(refl.strength[None, :] / s_ref[:, None], 1.0)
    if visibility is not None:  # a reflection in a form-factor minimum may be invisible
        w_miss = w_miss * np.minimum(1.0, visibility(g) / FULL_VISIBILITY)
    # reflections crowd at high order: a peak within e = max(|ε|, σ_ε) of a reflection whose
    # neighbours are less than 4 e away (a random position comes that close with
    # probability over ½) is explained by chance, is evidence for no lattice and costs as
    # much as an unexplained one
    rel_gap = np.diff(refl.g) / refl.g[:-1]
    gap = np.minimum(np.r_[np.inf, rel_gap], np.r_[rel_gap, np.inf])
    evidence = matched & (gap[j] > 4.0 * np.maximum(np.abs(eps), sigma_eps))
    rel = np.ones(q_obs.size) if reliability is None else reliability
    # a reflection is expected as reliably as the most reliable peak the hypothesis
    # explains (by a resolved reflection) at or above it: the orders of a paracrystal fade
    # with q, and where only weak peaks are left the reflections between them may be lost
    rel_m = np.where(evidence, rel[None, :], 0.0)
    above = np.c_[np.maximum.accumulate(rel_m[:, ::-1], axis=1)[:, ::-1], np.zeros(a.size)]
    w_miss = w_miss * np.take_along_axis(above, np.searchsorted(q_obs, g * (1 - tol)), axis=1)
    missing = np.sum(np.where(miss, w_miss, 0.0), axis=1)
    # a peak whose half width covers several reflections is their unresolved blend (the
    # broadened high orders of a paracrystal): neither evidence nor unexplained
    blend = np.zeros_like(matched)
    if fwhm is not None:
        half = np.maximum(tol, 0.5 * fwhm / q_obs)[None, :, None]
        blend = ~matched & (np.count_nonzero(absr <= half, axis=2) >= 2)
    price = np.where(blend, 0.0, unmatched_cost * rel[None, :])
    chi = np.sum(np.where(evidence, np.minimum((eps / sigma_eps) ** 2, price), price), axis=1)
    cost = chi + missing_cost * missing + 2.0 * _N_PARAMS[lattice]
    if peak_area is not None:
        cost = cost + _intensity_misfit(refl, absr, reach, q_obs, np.where(evidence, rel[None, :], 0.0), peak_area)
    return j, eps, matched, evidence, blend, missing, cost


def _fit_lattice(lattice, q_obs, q_lo, q_hi, tol, sigma_eps, unmatched_cost, missing_cost, fwhm=None,
                 reliability=None, visibility=None, peak_area=None, n_first=8):
    if lattice in ("bct", "hex"):
        ca_grid = np.round(np.arange(0.55, 2.0001, 0.01), 4)
    elif lattice == "hcp":
        ca_grid = np.array([IDEAL_HCP_C_OVER_A])
    else:
        ca_grid = np.array([1.0])
    q_anchor = q_obs[: min(3, q_obs.size)]
    span = q_hi / float(q_anchor[0]) * (1 + 3 * tol)
    args = (q_obs, q_lo, q_hi, tol, sigma_eps, unmatched_cost, missing_cost, fwhm, reliability, visibility, peak_area)
    best = None
    for ca in ca_grid:
        g_first = reflections(lattice, 2 * math.pi * 3.0, ca).g[:n_first]
        refl = reflections(lattice, float(g_first[-1]) * span, ca)
        g_first = refl.g[:n_first]
        hyp = (g_first[None, :] / q_anchor[:, None]).ravel()
        cost = _evaluate(lattice, refl, hyp, *args)[-1]
        k = int(np.argmin(cost))
        if best is None or cost[k] < best[0] - 1e-9:
            best = (float(cost[k]), float(hyp[k]), float(ca), refl)
    if best is None:
        return None
    _, a, ca, refl = best

    def one(refl_, a_):
        j, eps, matched, evidence, blend, missing, cost = _evaluate(lattice, refl_, a_, *args)
        return j[0], eps[0], matched[0], evidence[0], blend[0], float(missing[0]), float(cost[0])

    for _ in range(3):  # refine a (and c/a) on the matched peaks, re-assign
        j, eps, matched, _, _, missing, cost = one(refl, a)
        if not matched.any():
            break
        a_new, ca_new = _refine_params(lattice, refl, j[matched], q_obs[matched], ca)
        refl_new = refl if ca_new == ca else reflections(lattice, float(refl.g[-1]) * 1.2, ca_new)
        if one(refl_new, a_new)[-1] > cost + 1e-9:
            break
        a, ca, refl = a_new, ca_new, refl_new
    j, eps, matched, evidence, blend, missing, cost = one(refl, a)
    hkl = tuple(tuple(int(v) for v in refl.hkl[jj]) if m else None for jj, m in zip(j, matched))
    rms = float(np.sqrt(np.mean(eps[matched] ** 2))) if matched.any() else float("nan")
    unexplained = ~matched & ~blend if reliability is None else ~matched & ~blend & (reliability >= 0.5)
    free_ca = lattice in ("bct", "hex")
    a_err, ca_err = lattice_errors(refl, j[matched], q_obs[matched], a, ca, free_ca, sigma_eps)
    n_m, n_u = int(matched.sum()), int(unexplained.sum())
    return LatticeFit(lattice, float(a), float(ca) if lattice in ("bct", "hcp", "hex") else None,
                      tuple(float(v) for v in q_obs), hkl, rms, n_m, n_u, missing, cost, a_err,
                      ca_err if free_ca else None, n_m / max(n_m + n_u + missing, 1e-12), int(evidence.sum()))


def lattice_errors(refl: Reflections, j: np.ndarray, q_obs: np.ndarray, a: float, c_over_a: float,
                   free_c_over_a: bool, position_sigma: float) -> tuple[float, float]:
    """Standard errors of a (nm) and of c/a from the indexed peak positions.

    Linearised least squares of ln q_i = ½ ln(A_i / a² + C_i / c²) in (ln a, ln c) (one
    parameter, ln a, where c/a is fixed): covariance σ_ε² (JᵀJ)⁻¹ with σ_ε² = Σ ε_i² /
    (n − p) the scatter of the relative residuals (``position_sigma`` where n ≤ p).
    """
    n = q_obs.size
    if n == 0:
        return float("nan"), float("nan")
    c = a * c_over_a
    ta = refl.coef_a[j] / a**2
    tc = refl.coef_c[j] / c**2
    q_calc2 = ta + tc
    eps = q_obs / np.sqrt(q_calc2) - 1.0
    if free_c_over_a:
        jac = np.stack([-ta / q_calc2, -tc / q_calc2], axis=1)
    else:
        jac = (-(ta + tc) / q_calc2)[:, None]
    p = jac.shape[1]
    s2 = float(np.sum(eps**2) / (n - p)) if n > p else position_sigma**2
    cov = np.linalg.pinv(jac.T @ jac) * s2
    a_err = a * math.sqrt(max(float(cov[0, 0]), 0.0))
    if not free_c_over_a:
        return a_err, 0.0
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    return a_err, c_over_a * math.sqrt(max(var, 0.0))


def index_peaks(peaks_q_nm, q_range_nm: tuple[float, float] | None = None, *,
                lattices: tuple[str, ...] = LATTICES, tol: float = 0.012, position_sigma: float = 0.004,
                unmatched_cost: float = 16.0, missing_cost: float = 4.0, min_peaks: int = 3,
                max_unmatched: int = 0, peak_fwhm_nm=None, peak_reliability=None,
                visibility=None, peak_area=None,
                nearest_neighbour_range_nm: tuple[float, float] | None = None) -> IndexingResult:
    """Index observed Bragg peak positions to a lattice (see the module docstring).

    Parameters
    ----------
    peaks_q_nm : observed peak positions, nm⁻¹.
    q_range_nm : (q_min, q_max) of the measured curve, nm⁻¹: reflections predicted inside
        it but not observed count as missing. Default: the span of the peaks.
    lattices : lattices to try.
    tol : largest |q_obs / q_calc − 1| of a matched peak.
    position_sigma : expected relative error of a peak position (weights the fit).
    unmatched_cost, missing_cost : prices of an unexplained peak and of a missing reflection.
    min_peaks : least number of matched peaks for a 3D lattice (lamellar: 2).
    max_unmatched : how many observed peaks may stay unexplained (one more per
        :data:`MATCHED_PER_STRAY_PEAK` explained not by chance).
    peak_fwhm_nm : optional FWHM of each observed peak (nm⁻¹): a reflection within the
        FWHM of an observed peak counts as observed (unresolved from it), not missing.
    peak_reliability : optional weight in [0, 1] of each observed peak: an unexplained
        peak costs ``unmatched_cost`` × its reliability, and one below ½ does not count
        against ``max_unmatched`` (a maximum of S(q) next to a form-factor minimum).
    visibility : optional function q (nm⁻¹) → [0, 1], how visible a reflection at q can
        be (the form factor's share of its envelope): a missing reflection weighs
        min(1, visibility / :data:`FULL_VISIBILITY`) of its strength.
    peak_area : optional integrated intensity of each observed peak on a structure
        factor (S(q) units × nm⁻¹; not on I(q), where the form factor reshapes it): the
        misfit of their logarithms to the lattice's m|F|²/q² with a fade exp(−B q²) is
        added to the cost (see :func:`_intensity_misfit`).
    nearest_neighbour_range_nm : optional (lowest, highest) nearest-neighbour distance
        (nm) of an accepted lattice (:func:`nearest_neighbour_nm`; lamellar has none):
        particles of a known size fit only lattices whose sites are that far apart.
    """
    q_obs = np.asarray(peaks_q_nm, dtype=float)
    order = np.argsort(q_obs, kind="stable")
    keep = np.isfinite(q_obs[order]) & (q_obs[order] > 0)
    q_obs = q_obs[order][keep]
    fwhm = None if peak_fwhm_nm is None else np.asarray(peak_fwhm_nm, dtype=float)[order][keep]
    rel = None if peak_reliability is None else np.asarray(peak_reliability, dtype=float)[order][keep]
    area = None if peak_area is None else np.asarray(peak_area, dtype=float)[order][keep]
    if q_obs.size < 2:
        return IndexingResult(None, (), f"{q_obs.size} Bragg peak(s): too few to index a lattice.")
    q_lo = float(q_obs[0]) if q_range_nm is None else min(float(q_range_nm[0]), float(q_obs[0]))
    fits = []
    for lat in lattices:
        fit = _fit_lattice(lat, q_obs, q_lo, float(q_obs[-1]) * (1 + tol), tol, position_sigma, unmatched_cost,
                           missing_cost, fwhm, rel, visibility, area)
        if fit is not None:
            fits.append(fit)
    fits.sort(key=lambda f: (round(f.cost, 6), _PREFERENCE[f.lattice]))
    for fit in fits:
        need = 2 if fit.lattice == "lamellar" else min_peaks
        if fit.n_matched < need:
            continue
        stray = fit.n_resolved // MATCHED_PER_STRAY_PEAK if _N_PARAMS[fit.lattice] == 1 else 0
        if fit.n_unmatched > max_unmatched + stray:
            continue
        if fit.lattice == "bct" and "bcc" in lattices and "fcc" in lattices \
                and min(abs(fit.c_over_a - 1.0), abs(fit.c_over_a / math.sqrt(2.0) - 1.0)) <= CUBIC_BCT_TOL:
            continue  # bct with c/a = 1 is bcc and with √2 fcc: the cubic fit stands for it
        if fit.missing > MAX_MISSING_PER_MATCHED[_N_PARAMS[fit.lattice]] * fit.n_matched:
            continue
        d_nn = nearest_neighbour_nm(fit)
        if nearest_neighbour_range_nm is not None and d_nn is not None \
                and not nearest_neighbour_range_nm[0] <= d_nn <= nearest_neighbour_range_nm[1]:
            continue
        return IndexingResult(fit, tuple(fits), f"{fit.lattice}: {fit.n_matched} peaks indexed, "
                                                 f"rms error {fit.rms_rel_error:.2%}.")
        # only the cheapest acceptable fit is returned
    return IndexingResult(None, tuple(fits), f"no lattice explains the {q_obs.size} Bragg peaks.")


def nearest_neighbour_nm(fit: LatticeFit) -> float | None:
    """Nearest-neighbour distance of the lattice sites (nm); None for lamellar."""
    a, ca = fit.a_nm, fit.c_over_a
    if fit.lattice == "fcc":
        return a / math.sqrt(2.0)
    if fit.lattice == "bcc":
        return a * math.sqrt(3.0) / 2.0
    if fit.lattice == "bct":
        return min(a, a * math.sqrt(0.5 + ca * ca / 4.0), a * ca)
    if fit.lattice in ("sc", "hcp"):
        return a
    if fit.lattice == "hex":
        return min(a, a * ca)
    return None


def index_curve(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None,
                **kwargs) -> tuple[list[BraggPeak], IndexingResult]:
    """Find the Bragg peaks of a curve and index them; keyword arguments go to the peak
    search (``min_snr``, ``min_contrast``, ``max_rel_fwhm``, ``envelope_width``) or to
    :func:`index_peaks`."""
    peak_keys = {"min_snr", "min_contrast", "max_rel_fwhm", "envelope_width"}
    pk = {k: v for k, v in kwargs.items() if k in peak_keys}
    ik = {k: v for k, v in kwargs.items() if k not in peak_keys}
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    peaks = find_bragg_peaks(q, i, sigma, **pk)
    strongest = sorted(sorted(peaks, key=lambda p: -p.snr)[:MAX_INDEXED_PEAKS], key=lambda p: p.q_nm)
    if "peak_fwhm_nm" not in ik:
        ik["peak_fwhm_nm"] = [p.fwhm_nm for p in strongest]
    return peaks, index_peaks([p.q_nm for p in strongest], (float(q[0]), float(q[-1])), **ik)


__all__ = [
    "BraggPeak",
    "IndexingResult",
    "LATTICES",
    "LatticeFit",
    "Reflections",
    "find_bragg_peaks",
    "index_curve",
    "index_peaks",
    "nearest_neighbour_nm",
    "reflections",
    "smooth_baseline",
]
