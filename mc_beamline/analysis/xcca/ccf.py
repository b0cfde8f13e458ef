"""Mask-corrected angular cross-correlation functions (XCCA) of ring profiles.

Sign convention (used everywhere in mc-beamline)::

    C(q1, q2, Δ) = < I(q1, φ) · I(q2, φ + Δ) >_φ

so a peak of ring q2 at φ0 + Δ0 relative to a peak of ring q1 at φ0 gives a CCF peak at
Δ = +Δ0. Δ is in degrees on the grid of the N lags m·360°/N wrapped to (-180°, 180°] and
sorted ascending (:func:`delta_grid_deg`); for even N that is -180° + (k+1)·360°/N.

Mask correction (Kurta et al., Adv. Chem. Phys. 2016; Altarelli et al., PRB 82, 104207):
with W the good-pixel weight of each azimuthal bin and F the forward-normalised DFT
(F[x]_n = (1/N) Σ_k x_k e^{-2πi nk/N}),

    C̃(Δ) = IFFT[conj(F[W·I](q1)) · F[W·I](q2)] / IFFT[conj(F[W](q1)) · F[W](q2)],

where the IFFT has no 1/N factor, so the denominator is (1/N) Σ_φ W1(φ) W2(φ+Δ), the
fraction of bins seen in both rings at that lag. C̃ is undefined (NaN) where the
denominator is below 1/(2N), i.e. where the rings overlap by less than half a bin.
The normalised CCF is C̃ / (<I(q1)> <I(q2)>) - 1 with the W-weighted ring means.

Fourier components: C_n(q1, q2) = I_n*(q1) · I_n(q2), the forward DFT of C(Δ) over the lag.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mc_beamline.analysis.xcca.accumulate import SumCountAverage


@lru_cache(maxsize=32)
def _delta_order(n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    lag_deg = np.arange(n_bins) * (360.0 / n_bins)
    wrapped = np.where(lag_deg > 180.0, lag_deg - 360.0, lag_deg)
    order = np.argsort(wrapped, kind="stable")
    delta = wrapped[order]
    delta.setflags(write=False)
    order.setflags(write=False)
    return delta, order


def delta_grid_deg(n_bins: int) -> np.ndarray:
    """The Δ values (degrees, ascending, in (-180, 180]) on which CCFs are returned."""
    return _delta_order(int(n_bins))[0].copy()


def lag_order(n_bins: int) -> np.ndarray:
    """Indices that reorder an array over lags m = 0 … N-1 onto :func:`delta_grid_deg`."""
    return _delta_order(int(n_bins))[1]


def _prepare(intensity: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    intensity = np.asarray(intensity, dtype=np.float64)
    if weight is None:
        weight = np.isfinite(intensity).astype(np.float64)
    else:
        weight = np.asarray(weight, dtype=np.float64)
        if weight.shape != intensity.shape:
            raise ValueError(f"Weight shape {weight.shape} differs from intensity shape {intensity.shape}.")
    good = (weight > 0) & np.isfinite(intensity)
    w = np.where(good, weight, 0.0)
    return np.where(good, intensity, 0.0) * w, w


def masked_ccf(
    intensity1: np.ndarray,
    weight1: np.ndarray | None,
    intensity2: np.ndarray | None = None,
    weight2: np.ndarray | None = None,
    normalise: bool = True,
) -> np.ndarray:
    """Mask-corrected CCF C(q1, q2, Δ) of two ring profiles (autocorrelation if q2 is None).

    Parameters
    ----------
    intensity1, intensity2 : ring profiles I(φ_k), shape (..., N), in any intensity unit;
        NaN where a bin has no data.
    weight1, weight2 : good-pixel weights W in [0, 1] of the bins (None: 1 where finite).
    normalise : return C̃ / (<I1><I2>) - 1 (dimensionless) instead of C̃ (intensity²).

    Returns
    -------
    CCF of shape (..., N) on :func:`delta_grid_deg` (degrees); NaN where fewer than half a
    bin of the two rings overlaps at that Δ, or where a ring mean is zero or undefined.
    """
    x1, w1 = _prepare(intensity1, weight1)
    if intensity2 is None:
        x2, w2 = x1, w1
    else:
        x2, w2 = _prepare(intensity2, weight2)
    n = x1.shape[-1]
    if x2.shape[-1] != n:
        raise ValueError("Both ring profiles need the same number of azimuthal bins.")
    spectra = np.fft.rfft(np.stack(np.broadcast_arrays(x1, w1, x2, w2)), axis=-1, norm="forward")
    prod = np.stack([np.conj(spectra[0]) * spectra[2], np.conj(spectra[1]) * spectra[3]])
    num, den = np.fft.irfft(prod, n=n, axis=-1, norm="forward")
    with np.errstate(invalid="ignore", divide="ignore"):
        ccf = np.where(den >= 0.5 / n, num / np.where(den > 0, den, 1.0), np.nan)
        if normalise:
            m1 = x1.sum(axis=-1) / w1.sum(axis=-1)
            m2 = x2.sum(axis=-1) / w2.sum(axis=-1)
            norm = np.asarray(m1 * m2)[..., None]
            ccf = np.where(np.isfinite(norm) & (norm != 0), ccf / np.where(norm != 0, norm, 1.0) - 1.0, np.nan)
    return ccf[..., lag_order(n)]


def ring_mean(intensity: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """W-weighted mean intensity of ring profiles over φ, shape (...); NaN without data."""
    x, w = _prepare(intensity, weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x.sum(axis=-1) / w.sum(axis=-1)


def fourier_components(ccf: np.ndarray, n_max: int | None = None) -> np.ndarray:
    """Fourier components C_n of a CCF on :func:`delta_grid_deg`, n = 0 … n_max.

    C_n = (1/N) Σ_Δ C(Δ) e^{-i n Δ}; for unmasked rings this equals I_n*(q1) · I_n(q2)
    with forward-normalised ring coefficients I_n. Bins where the CCF is NaN are left
    out (the sum is rescaled by the covered fraction), so a masked CCF gives estimates.
    Complex array of shape (..., n_max + 1).
    """
    ccf = np.asarray(ccf, dtype=np.float64)
    n = ccf.shape[-1]
    if n_max is None:
        n_max = n // 2
    delta = np.radians(delta_grid_deg(n))
    valid = np.isfinite(ccf)
    harmonics = np.arange(n_max + 1)
    kernel = np.exp(-1j * harmonics[:, None] * delta[None, :])  # (n_max+1, N)
    total = np.where(valid, ccf, 0.0) @ kernel.T
    frac = valid.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / frac


def ring_fourier_coefficients(intensity: np.ndarray, n_max: int | None = None) -> np.ndarray:
    """Forward-normalised Fourier coefficients I_n = (1/N) Σ_k I(φ_k) e^{-i n φ_k} of full rings.

    φ_k are the bin centres of :mod:`mc_beamline.analysis.detector.polar`. Complex, shape
    (..., n_max + 1). For masked rings use :func:`fourier_components` of the masked CCF.
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    n = intensity.shape[-1]
    coeffs = np.fft.rfft(intensity, axis=-1, norm="forward")
    # the first bin centre is at -180° + 360°/N, not at 0°: shift the phase reference.
    harmonics = np.arange(coeffs.shape[-1])
    phi0 = np.radians(-180.0 + 360.0 / n)
    coeffs = coeffs * np.exp(-1j * harmonics * phi0)
    return coeffs[..., : (n // 2 if n_max is None else n_max) + 1]


class CcfAccumulator(SumCountAverage):
    """Streaming average of per-frame CCFs, robust to Δ values a frame does not cover.

    Keeps, per Δ, the sum of the valid (finite) CCF values and the number of frames that
    contributed; Δ never covered averages to NaN, not 0. Accumulators of disjoint frame
    sets merge exactly like one pass over all frames (up to floating-point summation
    order). The state is plain arrays (:meth:`to_state` / :meth:`from_state`).

    Parameters
    ----------
    n_bins : number N of azimuthal bins (the CCF length).
    """

    def __init__(self, n_bins: int):
        self.n_bins = int(n_bins)
        self.delta_deg = delta_grid_deg(self.n_bins)
        self.sum = np.zeros(self.n_bins, dtype=np.float64)
        self.count = np.zeros(self.n_bins, dtype=np.int64)
        self.n_frames = 0

    def add(self, ccf: np.ndarray) -> None:
        """Add one CCF (N,) or a batch (n_frames, N) on :func:`delta_grid_deg`."""
        ccf = np.asarray(ccf, dtype=np.float64)
        if ccf.shape[-1] != self.n_bins or ccf.ndim not in (1, 2):
            raise ValueError(f"CCF of shape {ccf.shape} does not fit N = {self.n_bins} bins.")
        batch = ccf.reshape(-1, self.n_bins)
        valid = np.isfinite(batch)
        self.sum += np.where(valid, batch, 0.0).sum(axis=0)
        self.count += valid.sum(axis=0)
        self.n_frames += batch.shape[0]

    def to_state(self) -> dict:
        """Plain-array state: ``{"n_bins", "sum", "count", "n_frames"}``."""
        return {"n_bins": self.n_bins, "sum": self.sum.copy(), "count": self.count.copy(), "n_frames": self.n_frames}

    @classmethod
    def from_state(cls, state: dict) -> "CcfAccumulator":
        acc = cls(int(state["n_bins"]))
        acc.sum = np.array(state["sum"], dtype=np.float64)
        acc.count = np.array(state["count"], dtype=np.int64)
        acc.n_frames = int(state["n_frames"])
        if acc.sum.shape != (acc.n_bins,) or acc.count.shape != (acc.n_bins,):
            raise ValueError("CCF accumulator state does not match its number of bins.")
        return acc
