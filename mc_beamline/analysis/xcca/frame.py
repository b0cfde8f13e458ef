"""Per-frame XCCA engine: ring regrouping, mask-corrected CCF and ring peaks in one pass.

:class:`XccaFrameEngine` is built once per (geometry, mask, rings, N). For each frame it
gathers only the pixels of the rings (:class:`~mc_beamline.analysis.detector.polar.RingPolarOperator`),
then does one forward FFT of the weighted profiles and one inverse FFT that yields both the
CCF numerators and the smoothed profiles with their noise. When a frame has no bad pixel
of its own, all mask-dependent denominators are the precomputed static ones. The steps
between the FFTs are compiled (:mod:`~mc_beamline.analysis.xcca.kernels`). The numbers
equal those of :func:`~mc_beamline.analysis.xcca.ccf.masked_ccf` and
:func:`~mc_beamline.analysis.xcca.peaks.smooth_profiles` / :func:`~mc_beamline.analysis.xcca.peaks.detect_peaks`
(the tests check this); this module only fuses them for speed.

Conventions: see :mod:`mc_beamline.analysis.xcca.ccf` (C(Δ) = <I(q1, φ) I(q2, φ+Δ)>_φ,
Δ in (-180°, 180°]) and :mod:`mc_beamline.analysis.detector.polar` (bins, bad pixels,
intensity corrections).

With a normalisation n = Ω·P (solid angle, polarisation) the profiles are corrected
intensities I' = s·I, s = |bin| / Σ n the bin's factor; the noise model of the smoothed
profiles follows: Poisson counts give var(I') = s·L'/n_good + s²/n_good² at the corrected
level L', so the peak thresholds (in units of that noise) mean the same with and without
corrections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mc_beamline.analysis.detector.polar import Ring, RingPolarOperator, RingProfiles
from mc_beamline.analysis.xcca.ccf import delta_grid_deg, lag_order
from mc_beamline.analysis.xcca.kernels import (
    finish_frames,
    spectrum_products,
    static_profiles,
)
from mc_beamline.analysis.xcca.peak_kernels import PEAK_FIELDS
from mc_beamline.analysis.xcca.peaks import (
    PeakSearch,
    RingPeak,
    SmoothedProfiles,
    kernel_spectra,
    peak_lists,
)
from mc_beamline.instrument.geometry import DetectorGeometry


@dataclass(frozen=True)
class RingSettings:
    """How one ring is regrouped and searched for peaks.

    Attributes
    ----------
    q_nm : ring centre, nm⁻¹.
    half_width_nm : ring half width, nm⁻¹.
    smooth_deg : Gaussian σ of the profile smoothing for peak finding, degrees.
    min_snr : minimum peak prominence in units of the smoothed profile's noise σ.
    window_deg : search window on each side of a maximum for its prominence, degrees.
    """

    q_nm: float
    half_width_nm: float
    smooth_deg: float = 1.0
    min_snr: float = 8.0
    window_deg: float = 15.0


@dataclass(frozen=True)
class FrameXcca:
    """What the engine computes for one frame.

    Attributes
    ----------
    profiles : ring profiles (n_rings, N) (see :class:`~mc_beamline.analysis.detector.polar.RingProfiles`).
    smoothed : smoothed profiles with noise and validity (n_rings, N).
    ring_mean : W-weighted mean intensity of each ring (n_rings,), counts per pixel.
    ccf : normalised mask-corrected CCFs C̃/(<I1><I2>) - 1, (n_pairs, N) on ``delta_deg``,
        NaN where undefined.
    peaks : per ring, the list of :class:`~mc_beamline.analysis.xcca.peaks.RingPeak` by azimuth.
    """

    profiles: RingProfiles
    smoothed: SmoothedProfiles
    ring_mean: np.ndarray
    ccf: np.ndarray
    peaks: list[list[RingPeak]]


class XccaFrameEngine:
    """Regroup + CCF + peaks for single frames or batches.

    Parameters
    ----------
    geometry : detector geometry.
    rings : per-ring settings (q and half width in nm⁻¹, smoothing and peak thresholds).
    n_bins : number N of azimuthal bins.
    mask : static bad-pixel mask (``True`` = bad) or None.
    pairs : ring index pairs (i, j) whose CCF C(q_i, q_j, Δ) is computed; default (0, 1).
    n_radial : radial slices per ring for the q-sampling correction (see polar).
    min_coverage : smoothed bins with less than this fraction of the typical kernel weight
        are invalid for peak finding.
    normalization : per-pixel n = Ω·P the intensities are corrected for (detector shape), or
        None (see :class:`~mc_beamline.analysis.detector.polar.RingPolarOperator`).
    """

    def __init__(
        self,
        geometry: DetectorGeometry,
        rings: Sequence[RingSettings],
        n_bins: int = 360,
        mask: np.ndarray | None = None,
        pairs: Sequence[tuple[int, int]] = ((0, 1),),
        n_radial: int = 8,
        min_coverage: float = 0.25,
        normalization: np.ndarray | None = None,
    ):
        self.rings = tuple(rings)
        self.n_bins = int(n_bins)
        self.pairs = tuple((int(i), int(j)) for i, j in pairs)
        for i, j in self.pairs:
            if not (0 <= i < len(self.rings) and 0 <= j < len(self.rings)):
                raise ValueError(f"CCF pair {(i, j)} refers to a ring that was not given.")
        self.operator = RingPolarOperator(
            geometry, [Ring(r.q_nm, r.half_width_nm) for r in self.rings], self.n_bins, mask, n_radial,
            normalization,
        )
        self.azimuth_deg = self.operator.azimuth_deg
        self.delta_deg = delta_grid_deg(self.n_bins)
        self._order = np.ascontiguousarray(lag_order(self.n_bins), dtype=np.int64)
        width = 360.0 / self.n_bins
        self.smooth_bins = np.array([r.smooth_deg / width for r in self.rings])
        self.min_snr = np.array([r.min_snr for r in self.rings])
        self.window_deg = np.array([r.window_deg for r in self.rings])
        self.min_coverage = float(min_coverage)
        self._search = PeakSearch((len(self.rings),), self.n_bins, self.smooth_bins, self.min_snr, self.window_deg)
        spectra = [kernel_spectra(self.n_bins, float(b)) for b in self.smooth_bins]
        self._g_hat = np.stack([a for a, _ in spectra])
        self._g2_hat = np.stack([b for _, b in spectra])
        self._pair_i = np.array([i for i, _ in self.pairs], dtype=np.int64)
        self._pair_j = np.array([j for _, j in self.pairs], dtype=np.int64)
        self._precompute_static()

    # ------------------------------------------------------------------ helpers
    def _mask_terms(self, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mask-only quantities for weights (F, R, N): CCF denominators, g∗W, ΣW."""
        n = self.n_bins
        w_hat = np.fft.rfft(weight, axis=-1)  # "backward": irfft(conj(a)·b) = Σ_k a_k b_k+m
        den = np.fft.irfft(np.conj(w_hat[:, self._pair_i]) * w_hat[:, self._pair_j], n=n, axis=-1) / n
        cov = np.fft.irfft(w_hat * self._g_hat, n=n, axis=-1)
        return den, cov, weight.sum(axis=-1)

    def _inverses(self, den: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1/(N·den) in Δ order (NaN where the rings overlap by less than half a bin),
        validity of the smoothed bins and 1/(g∗W) (NaN where invalid)."""
        n = self.n_bins
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_den = np.where(den >= 0.5 / n, 1.0 / (n * den), np.nan)[..., self._order]
            valid = (cov >= self.min_coverage * self._typical_cov) & (cov > 1e-12)
            inv_cov = np.where(valid, 1.0 / cov, np.nan)
        return inv_den, valid, inv_cov

    def _variance_terms(self, weight: np.ndarray, n_good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """g² ∗ (s·w²/n) and g² ∗ (s²·w²/n²) (s: the bins' correction factors, 1 without
        corrections): the noise of S at level L is sqrt(L·a + b) / (g ∗ w)."""
        n = self.n_bins
        n_good = np.asarray(n_good, dtype=np.float64)
        safe = np.maximum(n_good, 1.0)
        a = np.where(n_good > 0, weight * weight / safe, 0.0)
        b = np.where(n_good > 0, weight * weight / (safe * safe), 0.0)
        scale = self.operator.bin_scale
        if scale is not None:
            a = a * scale
            b = b * (scale * scale)
        conv = np.fft.irfft(np.fft.rfft(np.stack([a, b]), axis=-1) * self._g2_hat, n=n, axis=-1)
        return conv[0], conv[1]

    def _precompute_static(self) -> None:
        """Everything that depends only on the static mask (leading frame axis of length 1)."""
        op = self.operator
        weight = op.weight_static[None]
        den, cov, w_sum = self._mask_terms(weight)
        self._typical_cov = np.percentile(cov[0], 90, axis=-1, keepdims=True)
        inv_den, valid, inv_cov = self._inverses(den, cov)
        self._valid_static = valid[0]
        self._valid_static.setflags(write=False)
        var_a, var_b = self._variance_terms(weight, op.n_static[None])
        self._static_terms = tuple(np.ascontiguousarray(a) for a in (inv_den, inv_cov, var_a, var_b))
        self._w_sum = w_sum[0]
        self._n_sub_f = op.n_static_sub.astype(np.float64)
        slice_n = self._n_sub_f.sum(axis=2)
        self._inv_slice_n = np.where(slice_n > 0, 1.0 / np.maximum(slice_n, 1.0), 0.0)
        self._inv_ring_n = 1.0 / np.maximum(op.n_static.sum(axis=-1), 1)
        self._empty = op.n_static == 0

    def _dynamic_profiles(self, sums: np.ndarray, n_sub: np.ndarray):
        """Profiles and mask terms of frames with bad pixels of their own (NumPy, rare path)."""
        mean, weight, n_good = self.operator.profiles_from_sums(sums, n_sub)
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(weight > 0, mean, 0.0) * weight
            var_a, var_b = self._variance_terms(weight, n_good)
            den, cov, w_sum = self._mask_terms(weight)
            inv_den, valid, inv_cov = self._inverses(den, cov)
            ring_mean = x.sum(axis=-1) / w_sum
        terms = tuple(np.ascontiguousarray(a) for a in (inv_den, inv_cov, var_a, var_b))
        return mean, weight, n_good, x, ring_mean, valid, terms

    # ------------------------------------------------------------------- public
    def process(self, frame: np.ndarray) -> FrameXcca:
        """Regroup, correlate and find peaks in one frame (detector shape)."""
        frame = np.asarray(frame)
        if frame.shape != self.operator.shape:
            raise ValueError(f"Frame shape {frame.shape} does not match the detector shape {self.operator.shape}.")
        return self._process_flat(frame.reshape(1, -1))[0]

    def process_batch(self, frames: np.ndarray) -> list[FrameXcca]:
        """:meth:`process` for a stack (n_frames, rows, columns), vectorised over frames."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.operator.shape:
            raise ValueError(f"Frame stack shape {frames.shape} does not match (n, *{self.operator.shape}).")
        return self._process_flat(frames.reshape(frames.shape[0], -1))

    def _process_flat(self, flat: np.ndarray) -> list[FrameXcca]:
        op = self.operator
        n, n_rings, n_pairs = self.n_bins, len(self.rings), len(self.pairs)
        n_frames = flat.shape[0]
        sums, n_sub = op.segment_sums(flat)
        if n_sub is None:  # fast path: every mask-dependent quantity is precomputed
            mean = np.empty((n_frames, n_rings, n))
            x = np.empty((n_frames, n_rings, n))
            ring_mean = np.empty((n_frames, n_rings))
            static_profiles(
                sums, self._inv_slice_n, self._n_sub_f, self._inv_ring_n, op.weight_static, self._empty,
                self._w_sum, mean, x, ring_mean,
            )
            # every frame shares the read-only static arrays
            weight, n_good = [op.weight_static] * n_frames, [op.n_static] * n_frames
            valid = [self._valid_static] * n_frames
            inv_den, inv_cov, var_a, var_b = self._static_terms
        else:
            mean, weight, n_good, x, ring_mean, valid, (inv_den, inv_cov, var_a, var_b) = self._dynamic_profiles(
                sums, n_sub
            )
        x_hat = np.fft.rfft(x, axis=-1)
        prod = np.empty((n_frames, n_pairs + n_rings, x_hat.shape[-1]), dtype=np.complex128)
        spectrum_products(x_hat, self._g_hat, self._pair_i, self._pair_j, prod)
        back = np.fft.irfft(prod, n=n, axis=-1)
        out = np.empty((n_frames, n_pairs + 2 * n_rings, n))
        table = np.empty((n_frames, n_rings, n // 2 + 1, PEAK_FIELDS))
        counts = np.empty((n_frames, n_rings), dtype=np.int64)
        search = self._search
        finish_frames(
            back, self._order, inv_den, self._pair_i, self._pair_j, ring_mean, inv_cov, var_a, var_b,
            search.min_snr, search.half, search.h_max, search.smooth_bins, float(self.azimuth_deg[0]), search.width,
            out, table, counts,
        )
        peaks = peak_lists(table, counts)
        ccf, s_val, s_sig = out[:, :n_pairs], out[:, n_pairs : n_pairs + n_rings], out[:, n_pairs + n_rings :]
        return [
            FrameXcca(
                profiles=RingProfiles(mean[f], weight[f], n_good[f], self.azimuth_deg),
                smoothed=SmoothedProfiles(s_val[f], s_sig[f], valid[f]),
                ring_mean=ring_mean[f],
                ccf=ccf[f],
                peaks=peaks[f * n_rings : (f + 1) * n_rings],
            )
            for f in range(n_frames)
        ]
