"""Per-frame XCCA engine: ring regrouping, mask-corrected CCF and ring peaks in one pass.

:class:`XccaFrameEngine` is built once per (geometry, mask, rings, N). For each frame it
gathers only the pixels of the rings (:class:`~mc_beamline.analysis.polar.RingPolarOperator`),
then does one forward FFT of the weighted profiles and one inverse FFT that yields both the
CCF numerators and the smoothed profiles with their noise. When a frame has no bad pixel
of its own, all mask-dependent denominators are the precomputed static ones. The numbers
equal those of :func:`~mc_beamline.analysis.xcca.masked_ccf` and
:func:`~mc_beamline.analysis.peaks.smooth_profiles` / :func:`~mc_beamline.analysis.peaks.detect_peaks`
(the tests check this); this module only fuses them for speed.

Conventions: see :mod:`mc_beamline.analysis.xcca` (C(Δ) = <I(q1, φ) I(q2, φ+Δ)>_φ,
Δ in (-180°, 180°]) and :mod:`mc_beamline.analysis.polar` (bins, bad pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import DetectorGeometry
from .peaks import PeakSearch, RingPeak, SmoothedProfiles, background_level, kernel_spectra
from .polar import Ring, RingPolarOperator, RingProfiles
from .xcca import delta_grid_deg, lag_order


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
    profiles : ring profiles (n_rings, N) (see :class:`~mc_beamline.analysis.polar.RingProfiles`).
    smoothed : smoothed profiles with noise and validity (n_rings, N).
    ring_mean : W-weighted mean intensity of each ring (n_rings,), counts per pixel.
    ccf : normalised mask-corrected CCFs C̃/(<I1><I2>) - 1, (n_pairs, N) on ``delta_deg``,
        NaN where undefined.
    peaks : per ring, the list of :class:`~mc_beamline.analysis.peaks.RingPeak` by azimuth.
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
    ):
        self.rings = tuple(rings)
        self.n_bins = int(n_bins)
        self.pairs = tuple((int(i), int(j)) for i, j in pairs)
        for i, j in self.pairs:
            if not (0 <= i < len(self.rings) and 0 <= j < len(self.rings)):
                raise ValueError(f"CCF pair {(i, j)} refers to a ring that was not given.")
        self.operator = RingPolarOperator(
            geometry, [Ring(r.q_nm, r.half_width_nm) for r in self.rings], self.n_bins, mask, n_radial
        )
        self.azimuth_deg = self.operator.azimuth_deg
        self.delta_deg = delta_grid_deg(self.n_bins)
        self._order = lag_order(self.n_bins)
        width = 360.0 / self.n_bins
        self.smooth_bins = np.array([r.smooth_deg / width for r in self.rings])
        self.min_snr = np.array([r.min_snr for r in self.rings])
        self.window_deg = np.array([r.window_deg for r in self.rings])
        self.min_coverage = float(min_coverage)
        spectra = [kernel_spectra(self.n_bins, float(b)) for b in self.smooth_bins]
        self._g_hat = np.stack([a for a, _ in spectra])
        self._g2_hat = np.stack([b for _, b in spectra])
        self._pair_i = np.array([i for i, _ in self.pairs], dtype=int)
        self._pair_j = np.array([j for _, j in self.pairs], dtype=int)
        if len(self.pairs) == 1:  # views instead of fancy indexing for the usual single pair
            i, j = self.pairs[0]
            self._pair_slices = (slice(i, i + 1), slice(j, j + 1))
        else:
            self._pair_slices = (self._pair_i, self._pair_j)
        self._precompute_static()
        self._searches: dict[int, PeakSearch] = {}

    # ------------------------------------------------------------------ helpers
    def _mask_terms(self, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mask-only quantities for weights (F, R, N): CCF denominators, g∗W, ΣW."""
        n = self.n_bins
        w_hat = np.fft.rfft(weight, axis=-1)  # "backward": irfft(conj(a)·b) = Σ_k a_k b_k+m
        den = np.fft.irfft(np.conj(w_hat[:, self._pair_i]) * w_hat[:, self._pair_j], n=n, axis=-1) / n
        cov = np.fft.irfft(w_hat * self._g_hat, n=n, axis=-1)
        return den, cov, weight.sum(axis=-1)

    def _variance_terms(self, weight: np.ndarray, n_good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """g² ∗ (w²/n) and g² ∗ (w²/n²): the noise of S at level L is sqrt(L·a + b) / (g ∗ w)."""
        n = self.n_bins
        n_good = np.asarray(n_good, dtype=np.float64)
        safe = np.maximum(n_good, 1.0)
        a = np.where(n_good > 0, weight * weight / safe, 0.0)
        b = np.where(n_good > 0, weight * weight / (safe * safe), 0.0)
        conv = np.fft.irfft(np.fft.rfft(np.stack([a, b]), axis=-1) * self._g2_hat, n=n, axis=-1)
        return conv[0], conv[1]

    def _precompute_static(self) -> None:
        op = self.operator
        n = self.n_bins
        weight = op.weight_static[None]
        den, cov, w_sum = self._mask_terms(weight)
        self._typical_cov = np.percentile(cov[0], 90, axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            # 1/denominator in Δ order, NaN where the rings overlap by less than half a bin
            self._inv_den = np.where(den >= 0.5 / n, 1.0 / (n * den), np.nan)[..., self._order]
            valid = (cov >= self.min_coverage * self._typical_cov) & (cov > 1e-12)
            self._inv_cov = np.where(valid, 1.0 / cov, np.nan)
        self._valid_static = valid
        # background level = 20th percentile of the valid smoothed bins (see peaks.background_level)
        n_valid = valid[0].sum(axis=-1)
        self._level_k = np.floor(0.2 * np.maximum(n_valid - 1, 0)).astype(np.intp)
        self._level_kth = sorted(set(self._level_k.tolist()))
        self._ring_index = np.arange(len(self.rings))
        self._w_sum = w_sum
        n_good = op.n_static[None].astype(np.float64)
        self._empty = op.n_static[None] == 0
        self._var_conv_a, self._var_conv_b = self._variance_terms(weight, n_good)
        self._n_sub_f = op.n_static_sub[None].astype(np.float64)
        slice_n = op.n_static_sub.sum(axis=2)[None].astype(np.float64)
        self._inv_slice_n = np.where(slice_n > 0, 1.0 / np.maximum(slice_n, 1.0), 0.0)
        self._inv_ring_n = 1.0 / np.maximum(op.n_static.sum(axis=-1)[None, :, None], 1)
        self._nan_empty = np.where(self._empty, np.nan, 0.0)

    def _peak_search(self, n_frames: int) -> PeakSearch:
        search = self._searches.get(n_frames)
        if search is None:
            search = PeakSearch(
                (n_frames, len(self.rings)), self.n_bins, self.smooth_bins, self.min_snr, self.window_deg
            )
            if len(self._searches) > 8:
                self._searches.clear()
            self._searches[n_frames] = search
        return search

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
        n = self.n_bins
        n_p = len(self.pairs)
        sums, n_sub = op.segment_sums(flat)
        static = n_sub is None
        with np.errstate(invalid="ignore", divide="ignore"):
            if static:
                # fast path: every mask-dependent quantity is precomputed
                bin_sum = sums.sum(axis=2)
                slice_sum = sums.sum(axis=3)
                expected = np.matmul((slice_sum * self._inv_slice_n)[..., None, :], self._n_sub_f)[..., 0, :]
                ring_mean_px = slice_sum.sum(axis=-1, keepdims=True) * self._inv_ring_n
                mean0 = bin_sum * (ring_mean_px / np.maximum(expected, 1e-300))
                mean = mean0 + self._nan_empty
                weight, n_good = op.weight_static[None], op.n_static[None]
                x = mean0 * weight
                var_a, var_b = self._var_conv_a, self._var_conv_b
                den_inv, cov_inv, w_sum, valid = self._inv_den, self._inv_cov, self._w_sum, self._valid_static
            else:
                mean, weight, n_good = op.profiles_from_sums(sums, n_sub)
                good = weight > 0
                x = np.where(good, mean, 0.0) * weight
                var_a, var_b = self._variance_terms(weight, n_good)
                den, cov, w_sum = self._mask_terms(np.ascontiguousarray(np.broadcast_to(weight, mean.shape)))
                den_inv = np.where(den >= 0.5 / n, 1.0 / (n * den), np.nan)[..., self._order]
                valid = (cov >= self.min_coverage * self._typical_cov) & (cov > 1e-12)
                cov_inv = np.where(valid, 1.0 / cov, np.nan)
            x_hat = np.fft.rfft(x, axis=-1)
            pi, pj = self._pair_slices
            cross = np.conj(x_hat[:, pi]) * x_hat[:, pj]
            prod = np.concatenate([cross, x_hat * self._g_hat], axis=1)
            back = np.fft.irfft(prod, n=n, axis=-1)
            ring_mean = x.sum(axis=-1) / w_sum
            norm = ring_mean[:, pi] * ring_mean[:, pj]
            ccf = np.take(back[:, :n_p], self._order, axis=-1) * (den_inv / norm[..., None]) - 1.0
            s_val = back[:, n_p:] * cov_inv  # NaN where invalid
            if static:  # NaN sort last, so the k-th smallest is among the valid bins
                part = np.partition(s_val, self._level_kth, axis=-1)
                level = np.maximum(part[:, self._ring_index, self._level_k], 0.0)[..., None]
            else:
                level = background_level(s_val, valid)
            s_sig = np.sqrt(level * var_a + var_b) * cov_inv
            if valid.shape != s_val.shape:
                valid = np.broadcast_to(valid, s_val.shape)
            smoothed = SmoothedProfiles(s_val, s_sig, valid)
            peaks = self._peak_search(flat.shape[0]).find(self.azimuth_deg, smoothed)
        if weight.shape != mean.shape:
            weight = np.broadcast_to(weight, mean.shape)
            n_good = np.broadcast_to(n_good, mean.shape)
        return [
            FrameXcca(
                profiles=RingProfiles(mean[f], weight[f], n_good[f], self.azimuth_deg),
                smoothed=SmoothedProfiles(s_val[f], s_sig[f], valid[f]),
                ring_mean=ring_mean[f],
                ccf=ccf[f],
                peaks=peaks[f],
            )
            for f in range(flat.shape[0])
        ]
