"""Orientational disorder ΔΦ from the shape of an averaged, aligned Bragg peak.

Seed 000 (Zaluzhnyy et al., Fig. 3e–g): the {111} peak averaged over the patterns is
broader in azimuth than radially. With Gaussian fits of the two cross sections,

    ΔΦ_FWHM = 2.3548 · sqrt(σ_az² - (σ_q / q0)²)        (σ_az in radians)

where σ_q / q0 is the azimuthal width that the radial width alone would give. Each frame's
peak is shifted to a common azimuth before averaging, so that the rotation of grains
against each other does not add to the width.

:class:`PeakCutAccumulator` collects, per frame, the pixels of a band q0 ± ``q_half_width``
within ± ``phi_half_width`` of that frame's peak azimuth into a (q, Δφ) grid (sums of counts
and numbers of good pixels; exact and order-independent for integer counts). With a
normalisation n = Ω·P (solid angle, polarisation; :mod:`~mc_beamline.analysis.detector.corrections`)
each pixel adds v / n instead of v: the cells of a cut are aligned on each frame's peak, so
they hold different pixels in every frame and the correction is per pixel here.
:func:`fit_peak_widths` then fits the cross sections through the centre of the mean.

The cut of one frame is one compiled pass over the band's pixels of the window
(:func:`_cut_kernel`, numba) for integer and float frames; it gives the same numbers as
the NumPy expression it replaces (:meth:`PeakCutAccumulator._frame_cut_numpy`, still used
for other dtypes; the tests compare the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from mc_beamline.analysis.detector.corrections import check_normalization, usable_normalization
from mc_beamline.analysis.detector.polar import GAP_VALUE_U32, bad_value_mask
from mc_beamline.analysis.xcca.accumulate import SumCountAverage
from mc_beamline.instrument.geometry import DetectorGeometry, azimuth_ranges_deg

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# How _cut_kernel recognises bad values (those of polar.bad_value_mask), by frame dtype kind.
_BAD_EQUALS_MAX, _BAD_SIGNED, _BAD_FLOAT = 0, 1, 2


@numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _cut_kernel(flat, pix, phi, qbin, inv_norm, starts, stops, c, step, n_phi, bad_mode, bad_value, gap_possible,
                sums, counts):
    """Accumulate the window's pixels ``pix[starts[k]:stops[k]]`` of ``flat`` into ``sums``/``counts``.

    ``inv_norm``: 1/n of each pixel (same order as ``pix``), or an empty array for no
    correction; a pixel adds float64(v) · inv_norm[i].

    Per pixel, in the order of the NumPy version (so float sums add up identically):
    Δφ = mod(φ - c + 180, 360) - 180, azimuthal bin rint(Δφ / step) + n_phi // 2, cell
    qbin · n_phi + bin; bad values (``bad_mode``: equal to ``bad_value`` -- unsigned; negative
    or, if ``gap_possible``, equal to ``bad_value`` -- signed; not below ``bad_value`` or not
    finite -- float) and bins outside the grid are skipped.
    """
    half_grid = n_phi // 2
    for k in range(starts.size):
        for i in range(starts[k], stops[k]):
            v = flat[pix[i]]
            if bad_mode == 0:
                if v == bad_value:
                    continue
            elif bad_mode == 1:
                if v < 0 or (gap_possible and v == bad_value):
                    continue
            else:
                if not (v < bad_value) or not np.isfinite(v):
                    continue
            # m = np.mod(a, 360): fmod(a, 360) is a - 360 on [360, 720) (exact) and a on
            # (-360, 360); a negative remainder gets + 360, a zero one is +0.
            a = phi[i] - c + 180.0
            if 0.0 < a < 360.0:
                m = a
            elif 360.0 <= a < 720.0:
                m = a - 360.0
                if m == 0.0:
                    m = 0.0
            elif -360.0 < a < 0.0:
                m = a + 360.0
            else:
                m = np.fmod(a, 360.0)
                if m < 0.0:
                    m += 360.0
                elif m == 0.0:
                    m = 0.0
            dphi = m - 180.0
            pb = np.int64(np.rint(dphi / step)) + half_grid
            if pb < 0 or pb >= n_phi:
                continue
            cell = qbin[i] * n_phi + pb
            if inv_norm.size:
                sums[cell] += np.float64(v) * inv_norm[i]
            else:
                sums[cell] += np.float64(v)
            counts[cell] += 1


class PeakCutAccumulator(SumCountAverage):
    """Sum of (q, Δφ) cuts around one peak per frame, aligned on the peak's azimuth.

    Parameters
    ----------
    geometry : detector geometry.
    mask : static bad-pixel mask (True = bad) or None.
    q0_nm : nominal ring position, nm⁻¹.
    q_half_width_nm : half width of the q range of the cut, nm⁻¹.
    phi_half_width_deg : half width of the azimuthal range of the cut, degrees.
    n_q : number of q bins; ``phi_step_deg`` : azimuthal bin width in degrees.
    normalization : per-pixel n = Ω·P the intensities are corrected for (detector shape), or
        None; pixels where it is not finite and positive count as masked.
    """

    def __init__(
        self,
        geometry: DetectorGeometry,
        mask: np.ndarray | None,
        q0_nm: float,
        q_half_width_nm: float,
        phi_half_width_deg: float = 20.0,
        n_q: int = 28,
        phi_step_deg: float = 0.5,
        normalization: np.ndarray | None = None,
    ):
        self.q0_nm = float(q0_nm)
        self.q_half_width_nm = float(q_half_width_nm)
        self.phi_half_width_deg = float(phi_half_width_deg)
        self.n_q = int(n_q)
        self.phi_step_deg = float(phi_step_deg)
        self.n_phi = 2 * int(round(self.phi_half_width_deg / self.phi_step_deg)) + 1
        self.q_edges = np.linspace(self.q0_nm - self.q_half_width_nm, self.q0_nm + self.q_half_width_nm, self.n_q + 1)
        self.q_centers = 0.5 * (self.q_edges[:-1] + self.q_edges[1:])
        self.dphi_centers = (np.arange(self.n_phi) - self.n_phi // 2) * self.phi_step_deg
        self.shape = tuple(geometry.shape)
        q = geometry.q_map.ravel()
        sel = np.abs(q - self.q0_nm) < self.q_half_width_nm
        if mask is not None:
            sel &= ~np.asarray(mask, dtype=bool).ravel()
        norm = check_normalization(normalization, self.shape)
        if norm is not None:
            norm = norm.ravel()
            sel &= usable_normalization(norm)
        idx = np.flatnonzero(sel)
        phi = geometry.phi_map.ravel()[idx].astype(np.float64)
        order = np.argsort(phi, kind="stable")
        self._pix = idx[order].astype(np.intp)
        self._phi = phi[order]
        qb = np.floor((q[self._pix] - self.q_edges[0]) / (self.q_edges[1] - self.q_edges[0])).astype(np.int64)
        self._qbin = np.clip(qb, 0, self.n_q - 1)
        self._inv_norm = np.zeros(0) if norm is None else 1.0 / norm[self._pix]
        self.sum = np.zeros((self.n_q, self.n_phi), dtype=np.float64)
        self.count = np.zeros((self.n_q, self.n_phi), dtype=np.int64)
        self.n_frames = 0

    @property
    def pixels(self) -> np.ndarray:
        """Flat indices of the pixels a cut may read (the band's good pixels), by azimuth."""
        return self._pix

    def _window(self, peak_azimuth_deg: float) -> list[tuple[int, int]]:
        """Index ranges into the φ-sorted band pixels of the cut window around an azimuth."""
        c = float(peak_azimuth_deg)
        half = self.phi_half_width_deg + self.phi_step_deg
        return [tuple(int(i) for i in np.searchsorted(self._phi, r)) for r in azimuth_ranges_deg(c - half, c + half)]

    def frame_cut(self, frame: np.ndarray, peak_azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """(sum of counts, number of good pixels) on the (q, Δφ) grid of one frame's cut
        (with a normalisation: sum of counts / n)."""
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"Frame shape {frame.shape} does not match the detector shape {self.shape}.")
        dt = frame.dtype
        if dt.kind == "u":
            mode, bad_value, gap_possible = _BAD_EQUALS_MAX, dt.type(np.iinfo(dt).max), False
        elif dt.kind == "i":
            gap_possible = np.iinfo(dt).max >= GAP_VALUE_U32
            mode, bad_value = _BAD_SIGNED, (np.int64(GAP_VALUE_U32) if gap_possible else np.int64(0))
        elif dt.kind == "f" and dt.itemsize in (4, 8):
            mode, bad_value, gap_possible = _BAD_FLOAT, dt.type(GAP_VALUE_U32), False
        else:
            return self._frame_cut_numpy(frame, peak_azimuth_deg)
        window = self._window(peak_azimuth_deg)
        starts = np.array([a for a, _ in window], dtype=np.int64)
        stops = np.array([b for _, b in window], dtype=np.int64)
        sums = np.zeros(self.n_q * self.n_phi, dtype=np.float64)
        counts = np.zeros(self.n_q * self.n_phi, dtype=np.int64)
        _cut_kernel(np.ascontiguousarray(frame).reshape(-1), self._pix, self._phi, self._qbin, self._inv_norm,
                    starts, stops,
                    float(peak_azimuth_deg), self.phi_step_deg, self.n_phi, mode, bad_value, gap_possible,
                    sums, counts)
        return sums.reshape(self.sum.shape), counts.reshape(self.count.shape)

    def _frame_cut_numpy(self, frame: np.ndarray, peak_azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`frame_cut` in NumPy (the reference the compiled version is checked against)."""
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"Frame shape {frame.shape} does not match the detector shape {self.shape}.")
        size = self.n_q * self.n_phi
        c = float(peak_azimuth_deg)
        parts = [np.arange(a, b) for a, b in self._window(c)]
        sel = np.concatenate(parts)
        if sel.size == 0:
            return np.zeros(self.sum.shape), np.zeros(self.count.shape, dtype=np.int64)
        values = frame.reshape(-1).take(self._pix[sel], mode="wrap")
        bad = bad_value_mask(values)
        good = np.ones(values.size, bool) if bad is None else ~bad
        dphi = np.mod(self._phi[sel] - c + 180.0, 360.0) - 180.0
        pb = np.round(dphi / self.phi_step_deg).astype(np.int64) + self.n_phi // 2
        inside = good & (pb >= 0) & (pb < self.n_phi)
        cell = self._qbin[sel][inside] * self.n_phi + pb[inside]
        weights = values[inside].astype(np.float64)
        if self._inv_norm.size:
            weights = weights * self._inv_norm[sel][inside]
        sums = np.bincount(cell, weights=weights, minlength=size).reshape(self.sum.shape)
        counts = np.bincount(cell, minlength=size).reshape(self.count.shape)
        return sums, counts

    def add(self, frame: np.ndarray, peak_azimuth_deg: float) -> None:
        """Add the cut of one frame (detector shape, counts) centred on ``peak_azimuth_deg``."""
        sums, counts = self.frame_cut(frame, peak_azimuth_deg)
        self.sum += sums
        self.count += counts
        self.n_frames += 1

    def to_state(self) -> dict:
        return {"sum": self.sum.copy(), "count": self.count.copy(), "n_frames": self.n_frames}

    def load_state(self, state: dict) -> "PeakCutAccumulator":
        s = np.array(state["sum"], dtype=np.float64)
        c = np.array(state["count"], dtype=np.int64)
        if s.shape != self.sum.shape or c.shape != self.count.shape:
            raise ValueError("Peak-cut state does not match this accumulator's grid.")
        self.sum, self.count, self.n_frames = s, c, int(state["n_frames"])
        return self


@dataclass(frozen=True)
class PeakWidths:
    """Gaussian widths of an averaged peak and the orientational disorder they imply.

    Attributes
    ----------
    q0_nm : fitted peak position, nm⁻¹.
    sigma_q_nm : radial σ, nm⁻¹.
    sigma_az_deg : azimuthal σ, degrees.
    disorder_fwhm_deg : ΔΦ = 2.3548·sqrt(σ_az² - (σ_q/q0)²), degrees (NaN if σ_az is not
        larger than the radial contribution).
    disorder_fwhm_err_deg : standard error of ΔΦ, degrees: the Gaussian fits' covariance
        errors of σ_az, σ_q and q0 carried through the formula (first order).
    """

    q0_nm: float
    sigma_q_nm: float
    sigma_az_deg: float
    disorder_fwhm_deg: float
    disorder_fwhm_err_deg: float = float("nan")


def _gauss(x, a, x0, s, b):
    return b + a * np.exp(-0.5 * ((x - x0) / s) ** 2)


def _fit_gauss(x, y, s0):
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 5:
        raise ValueError("Too few points to fit a peak cross section.")
    b0 = float(np.percentile(y, 10))
    a0 = float(y.max() - b0)
    x0 = float(x[np.argmax(y)])
    from scipy.optimize import curve_fit  # only for the result: not before the first frame

    p, cov = curve_fit(_gauss, x, y, p0=[a0, x0, s0, b0], maxfev=5000)
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None)) if np.all(np.isfinite(cov)) else np.full(4, np.nan)
    return p[0], p[1], abs(p[2]), p[3], err


def fit_peak_widths(
    cut_mean: np.ndarray,
    q_centers: np.ndarray,
    dphi_centers_deg: np.ndarray,
    q_band_nm: float | None = None,
) -> PeakWidths:
    """Fit the azimuthal and radial cross sections through the centre of an averaged peak.

    Azimuthal: mean over q within ±``q_band_nm`` of the peak (default: ±1 radial σ after a
    first pass) versus Δφ, Gaussian + constant. Radial: mean over |Δφ| ≤ σ_az/2 minus the
    mean over |Δφ| ≥ 2.5 σ_az (removes isotropic rings), Gaussian + constant. Two passes.

    Raises
    ------
    ValueError
        If the cut holds too little data for the fits.
    """
    m = np.asarray(cut_mean, dtype=np.float64)
    q = np.asarray(q_centers, dtype=np.float64)
    d = np.asarray(dphi_centers_deg, dtype=np.float64)
    q0 = float(q[q.size // 2])
    band = q_band_nm if q_band_nm is not None else (q[-1] - q[0]) / 6.0
    sigma_az = 5.0
    sigma_q = band
    for _ in range(3):
        rows = np.abs(q - q0) <= max(band, 0.5 * (q[1] - q[0]))
        az = np.nanmean(m[rows], axis=0)
        _, c_az, sigma_az, _, err_az = _fit_gauss(d, az, sigma_az)
        core = np.abs(d - c_az) <= max(0.5 * sigma_az, abs(d[1] - d[0]))
        wing = np.abs(d - c_az) >= 2.5 * sigma_az
        radial = np.nanmean(m[:, core], axis=1)
        if wing.sum() >= 2:
            radial = radial - np.nanmean(m[:, wing], axis=1)
        _, q0, sigma_q, _, err_q = _fit_gauss(q, radial, sigma_q)
        band = sigma_q if q_band_nm is None else q_band_nm
    s_az = math.radians(sigma_az)
    excess = s_az**2 - (sigma_q / q0) ** 2
    fwhm = math.degrees(FWHM_PER_SIGMA * math.sqrt(excess)) if excess > 0 else float("nan")
    fwhm_err = float("nan")
    if excess > 0:
        # ∂ΔΦ/∂x = 2.3548² · (∂excess/∂x) / (2 ΔΦ), all in radians
        k = FWHM_PER_SIGMA**2 / (2.0 * math.radians(fwhm))
        d_az = k * 2.0 * s_az * math.radians(err_az[2])
        d_sq = k * 2.0 * sigma_q / q0**2 * err_q[2]
        d_q0 = k * 2.0 * sigma_q**2 / q0**3 * err_q[1]
        fwhm_err = math.degrees(math.sqrt(d_az**2 + d_sq**2 + d_q0**2))
    return PeakWidths(q0_nm=float(q0), sigma_q_nm=float(sigma_q), sigma_az_deg=float(sigma_az), disorder_fwhm_deg=fwhm,
                      disorder_fwhm_err_deg=fwhm_err)
