"""High-level XCCA of a nanodiffraction raster: frames in, RESULT.json dict out.

:class:`XccaAnalysis` is what the live callback, the replay and ``mc-beamline xcca`` all
call. It consumes frames one at a time (:meth:`XccaAnalysis.add_frame`) or in batches,
keeps per-frame results, merges partial analyses of disjoint frame sets, and computes the
result of the ``mc-beamline xcca`` contract (docs/results.md) on demand. Everything derived
across frames is computed in :meth:`XccaAnalysis.result` from the per-frame records in
frame-index order, so the result does not depend on the order frames arrived in, on how
they were batched, or on how partial analyses were merged: a replay gives the same numbers.

Per frame (:class:`~mc_beamline.analysis.xcca.frame.XccaFrameEngine`): azimuthal profiles
of the SL ring (q_sl) and the AL ring (q_al), peaks on both, and the normalised
mask-corrected CCF C(Δ) = <I_SL(φ) I_AL(φ + Δ)>_φ / (<I_SL><I_AL>) - 1 (Δ = φ_AL - φ_SL,
degrees in (-180, 180]); for frames with peaks on both rings also a (q, Δφ) cut around
the strongest AL peak, aligned on it.

Across frames (:meth:`XccaAnalysis.result`):

* selected frames: peaks on both rings, the strongest AL peak being "well resolved"
  (prominence ≥ ``min_relative_al_prominence`` × the median of the strongest AL peak
  over all frames with peaks on both rings; weaker ones are tails of neighbouring grains);
* averaged CCF over the selected frames (a Δ no frame covers is NaN → null in JSON);
* β from the SL {112} peak pairs of all frames, and the bct/bcc model fitted to the
  averaged CCF (which picks β or 90° - β and gives the peak positions);
* ψ per selected frame, orientational disorder ΔΦ from the aligned average {111} peak,
  SL orientation map and its domains.

Intensity corrections (:class:`XccaSettings`): the solid angle (on by default, as in pyFAI's
integrators) and, given a polarisation factor, the polarisation of each pixel divide the
intensities of both rings and of the AL peak cut
(:mod:`~mc_beamline.analysis.detector.corrections`), folded into the ring operator once.

Hot pixels (:mod:`~mc_beamline.analysis.detector.hot_pixels`) are searched for in the
first ``hot_pixel_frames`` frames received (K frames in arrival order, whatever their
raster index) and masked for the whole run. Those frames are analysed as they come, and a
compact copy of the pixels the analysis reads from them is kept (K x ≈ 130 000 pixels for a
1 Mpx detector, ≈ 17 MB for K = 32 uint32 frames); the search ends when K frames (or the
whole scan) are in, or at :meth:`XccaAnalysis.details`. If it found hot pixels, the searched
frames are analysed again with them masked, so every frame of the run is analysed with the
same mask. Offline, live and replay feed frames in the order they were measured (index
order for a full raster, the order the search chose for an adaptive one), so they search
the same frames and agree exactly; an adaptive raster's mask comes from as many frames as a
full raster's. Frames added after the search ended (merges of partial analyses) are
analysed with its mask but not searched.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mc_beamline.analysis.detector.corrections import IntensityCorrections
from mc_beamline.analysis.detector.hot_pixels import HotPixelSearch
from mc_beamline.analysis.xcca.ccf import CcfAccumulator
from mc_beamline.analysis.xcca.disorder import (
    PeakCutAccumulator,
    PeakWidths,
    fit_peak_widths,
)
from mc_beamline.analysis.xcca.domains import DomainMap, segment_domains
from mc_beamline.analysis.xcca.frame import FrameXcca, RingSettings, XccaFrameEngine
from mc_beamline.analysis.xcca.orientation import (
    PairAngle,
    al_orientation_candidates,
    misorientation,
    sl_orientation_candidates,
    sl_pair_angle,
)
from mc_beamline.analysis.xcca.structure import SuperlatticeFit, fit_superlattice
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.materials.lattice_angles import bct_beta_deg, c_over_a_from_beta


@dataclass
class FrameRecord:
    """What is kept of one frame.

    Attributes
    ----------
    index : frame index in the scan (row-major raster order unless ``snake``).
    sl_peaks, al_peaks : arrays (n, 2) of (azimuth in degrees, prominence) per ring.
    ccf : normalised CCF (N,) when the frame has peaks on both rings, else None.
    cut : the (q, Δφ) cut around its strongest AL peak (:meth:`pack_cut`), or None; read it
        as :attr:`cut_sum` (float32) and :attr:`cut_count` (uint16), both (n_q, n_φ).

    The cut is the largest thing kept per frame (~14 KB); it is stored zlib-compressed
    (lossless, ~3.5x smaller), so that a stream of 10^5 frames stays well inside 1 GiB.
    """

    index: int
    sl_peaks: np.ndarray
    al_peaks: np.ndarray
    ccf: np.ndarray | None = None
    cut: tuple[bytes, tuple[int, int]] | None = None

    @staticmethod
    def pack_cut(cut_sum: np.ndarray, cut_count: np.ndarray) -> tuple[bytes, tuple[int, int]]:
        """The compressed form of a cut: sums as float32, pixel counts as uint16."""
        sums = np.ascontiguousarray(cut_sum, dtype=np.float32)
        counts = np.ascontiguousarray(cut_count, dtype=np.uint16)
        if sums.shape != counts.shape or sums.ndim != 2:
            raise ValueError("A cut's sums and counts must be 2D arrays of one shape.")
        return zlib.compress(sums.tobytes() + counts.tobytes(), 1), sums.shape

    def unpack_cut(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(sums float32, counts uint16) of the cut, read-only, or None."""
        if self.cut is None:
            return None
        blob, shape = self.cut
        raw = zlib.decompress(blob)
        n = shape[0] * shape[1]
        sums = np.frombuffer(raw, dtype=np.float32, count=n).reshape(shape)
        counts = np.frombuffer(raw, dtype=np.uint16, count=n, offset=4 * n).reshape(shape)
        return sums, counts

    @property
    def cut_sum(self) -> np.ndarray | None:
        """Summed intensity of the cut, float32 (read-only), or None."""
        cut = self.unpack_cut()
        return None if cut is None else cut[0]

    @property
    def cut_count(self) -> np.ndarray | None:
        """Good pixels per cell of the cut, uint16 (read-only), or None."""
        cut = self.unpack_cut()
        return None if cut is None else cut[1]

    @property
    def candidate(self) -> bool:
        """Peaks on both rings."""
        return len(self.sl_peaks) > 0 and len(self.al_peaks) > 0


@dataclass(frozen=True)
class XccaDetails:
    """Everything :meth:`XccaAnalysis.result` derives across frames, with intermediate values
    (for figures, maps and tests); made by :meth:`XccaAnalysis.details`."""

    records: tuple[FrameRecord, ...]
    """Records of all frames, by frame index."""
    selected: tuple[int, ...]
    """Indices of the selected frames (peaks on both rings, a well-resolved AL peak), increasing."""
    ccf: np.ndarray
    """Averaged normalised CCF over the selected frames (dimensionless, one value per Δ of
    :attr:`XccaAnalysis.delta_deg` in degrees), NaN where no selected frame covers Δ."""
    fit: SuperlatticeFit | None
    """The bct/bcc model fitted to :attr:`ccf` (angles in degrees), None if it could not be fitted."""
    pair_angle: PairAngle | None
    """β from the SL {112} peak pairs of all frames (degrees), None without pairs."""
    beta_deg: float | None
    """Adopted β, degrees: the fit's, else the pair angle's (assumed < 45°), else None."""
    psi: dict[int, float]
    """Misorientation ψ between superlattice and atomic lattice, degrees, by frame index
    (selected frames where it was found)."""
    orientation: dict[int, tuple[float, ...]]
    """Candidate SL [1-10] azimuths, degrees, by frame index: one, or two when ambiguous."""
    domains: DomainMap
    """Domains of the SL orientation map (labels of raster shape :attr:`shape`; areas in µm²)."""
    shape: tuple[int, int]
    """(rows, columns) of the raster, positions."""
    widths: PeakWidths | None
    """Widths of the aligned average AL peak (nm⁻¹, degrees) and the orientational disorder
    ΔΦ (degrees), None without cuts or if the fit failed."""
    cut_mean: np.ndarray | None
    """Aligned average (q, Δφ) cut of the strongest AL peak over the selected frames
    (counts per pixel; q in nm⁻¹, Δφ in degrees), NaN where no pixel; None without cuts."""
    n_cut_frames: int
    """Selected frames whose cut went into :attr:`cut_mean`."""
    hot_pixels: np.ndarray | None
    """Flat indices (row · columns + column) of the hot pixels masked for the run, increasing;
    None when the search is off (``hot_pixel_frames`` = 0)."""


@dataclass(frozen=True)
class XccaSettings:
    """Parameters of :class:`XccaAnalysis` (q in nm⁻¹, angles in degrees, lengths in µm).

    Ring half widths default to 3.5 % (SL) and 3 % (AL) of q; the cut of the AL peak
    spans 2.5 ring half widths radially and ± ``cut_phi_half_width_deg``.

    Corrections: ``correct_solid_angle`` divides by each pixel's relative solid angle;
    ``polarization_factor`` (Ih - Iv)/(Ih + Iv) in [-1, 1] divides by each pixel's
    polarisation factor, None: no polarisation correction. ``hot_pixel_frames`` K: the first
    K frames are searched for hot pixels (0: no search), with the threshold
    ``hot_pixel_n_sigma`` (robust σ above the neighbourhood median) and the fraction
    ``hot_pixel_min_fraction`` of frames (see :mod:`~mc_beamline.analysis.detector.hot_pixels`).
    """

    q_sl: float
    q_al: float
    scan_shape: tuple[int, int] | None = None
    step_um: float | None = None
    snake: bool = False
    n_bins: int = 360
    sl_half_width_nm: float | None = None
    al_half_width_nm: float | None = None
    sl_smooth_deg: float = 1.0
    al_smooth_deg: float = 2.0
    min_snr: float = 7.0
    min_relative_al_prominence: float = 0.1
    psi_max_deg: float = 20.0
    orientation_tolerance_deg: float = 3.0
    domain_tolerance_deg: float = 3.0
    domain_min_positions: int = 2
    cut_phi_half_width_deg: float = 20.0
    cut_min_coverage: float = 0.85
    bcc_tolerance: float = 0.04
    correct_solid_angle: bool = True
    polarization_factor: float | None = None
    hot_pixel_frames: int = 32
    hot_pixel_n_sigma: float = 10.0
    hot_pixel_min_fraction: float = 0.5

    @property
    def sl_hw(self) -> float:
        return self.sl_half_width_nm if self.sl_half_width_nm is not None else 0.035 * self.q_sl

    @property
    def al_hw(self) -> float:
        return self.al_half_width_nm if self.al_half_width_nm is not None else 0.03 * self.q_al


MAX_LISTED_HOT_PIXELS = 100
"""Most hot pixels the result lists by position (all are counted)."""


def _c_over_a_err(c_over_a: float, fit: SuperlatticeFit | None, pair: PairAngle | None) -> float | None:
    """Standard error of the adopted c/a: the CCF fit's covariance where β was free, else the
    SL pair angle's standard error carried through c/a = √2 tan β."""
    if fit is not None and fit.beta_source == "ccf":
        return fit.c_over_a_ccf_error
    if pair is None:
        return None
    beta = math.atan(c_over_a / math.sqrt(2.0))
    return math.sqrt(2.0) / math.cos(beta) ** 2 * math.radians(pair.error_deg)


def _json_float(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class XccaAnalysis:
    """Streaming XCCA of a raster of frames.

    Parameters
    ----------
    geometry : detector geometry.
    mask : static bad-pixel mask (True = bad) or None.
    q_sl, q_al : superlattice and atomic ring positions, nm⁻¹ (e.g. 1.72 and 18.3).
    scan_shape : (rows, columns) of the raster; None: one row of frames.
    step_um : raster step in µm for domain areas (None: areas are null).
    **options : further :class:`XccaSettings` fields.

    Raises
    ------
    RingNotOnDetectorError
        If a ring has no good pixel on the detector.
    ValueError
        For settings out of range (scan shape, step, polarisation factor, hot-pixel search).
    """

    def __init__(
        self,
        geometry: DetectorGeometry,
        mask: np.ndarray | None = None,
        q_sl: float = 1.72,
        q_al: float = 18.3,
        scan_shape: Sequence[int] | None = None,
        step_um: float | None = None,
        **options: Any,
    ):
        if scan_shape is not None:
            scan_shape = (int(scan_shape[0]), int(scan_shape[1]))
            if scan_shape[0] < 1 or scan_shape[1] < 1:
                raise ValueError(f"Scan shape must be positive, got {scan_shape}.")
        if step_um is not None and not (math.isfinite(step_um) and step_um > 0):
            raise ValueError(f"Raster step must be a positive number of µm, got {step_um}.")
        self.settings = XccaSettings(
            q_sl=float(q_sl), q_al=float(q_al), scan_shape=scan_shape, step_um=step_um, **options
        )
        s = self.settings
        k = s.hot_pixel_frames
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise ValueError(f"The number of frames searched for hot pixels must be a whole number ≥ 0, got {k!r}.")
        self.geometry = geometry
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        """The static mask given (True = bad); hot pixels found are in :attr:`hot_pixels`."""
        self.corrections = IntensityCorrections(bool(s.correct_solid_angle), s.polarization_factor)
        self._normalization = self.corrections.normalization(geometry)
        self._build(self.mask)
        self.delta_deg = self.engine.delta_deg
        self.records: dict[int, FrameRecord] = {}
        self.running_ccf = CcfAccumulator(s.n_bins)
        """Live average of the CCF over frames with peaks on both rings (arrival order)."""
        self._search: HotPixelSearch | None = (
            HotPixelSearch(self.engine.operator, self.mask, s.hot_pixel_n_sigma, s.hot_pixel_min_fraction)
            if k > 0
            else None
        )
        self.hot_pixels: np.ndarray | None = None if k > 0 else np.zeros(0, dtype=np.int64)
        """Flat indices of the hot pixels masked for the run, increasing; None while the search runs."""
        self._held: dict[int, np.ndarray] = {}
        self._held_pixels = np.union1d(self.engine.operator.pixels, self._cut.pixels) if k > 0 else None

    def _build(self, mask: np.ndarray | None) -> None:
        """The frame engine and the AL peak cut for a mask (True = bad)."""
        s = self.settings
        self.engine = XccaFrameEngine(
            self.geometry,
            [
                RingSettings(s.q_sl, s.sl_hw, s.sl_smooth_deg, s.min_snr),
                RingSettings(s.q_al, s.al_hw, s.al_smooth_deg, s.min_snr),
            ],
            n_bins=s.n_bins,
            mask=mask,
            normalization=self._normalization,
        )
        self._cut = PeakCutAccumulator(
            self.geometry, mask, s.q_al, 2.5 * s.al_hw, phi_half_width_deg=s.cut_phi_half_width_deg,
            normalization=self._normalization,
        )

    # ------------------------------------------------------------------ ingest
    def add_frame(self, index: int, frame: np.ndarray) -> FrameRecord:
        """Analyse one frame (detector shape, counts) at raster ``index``; returns its record.

        A frame searched for hot pixels (one of the first ``hot_pixel_frames`` received)
        gets a new record when the search ends with hot pixels; :attr:`records` holds the
        current one.

        Raises
        ------
        ValueError
            For a frame of the wrong shape, an index outside the scan, or a repeated index.
        """
        self._check_index(index)
        index = int(index)
        frame = np.asarray(frame)
        self._ingest(index, frame, self.engine.process(frame))
        if self._search is not None:
            self._search_frames([index], frame[None])
        return self.records[index]

    def add_frames(self, indices: Sequence[int], frames: np.ndarray) -> list[FrameRecord]:
        """Analyse a stack of frames (n, rows, columns) at ``indices`` (vectorised).

        While the hot-pixel search runs, the batch's first frames, up to ``hot_pixel_frames``
        frames received in all, are searched before the rest of the batch is analysed.
        """
        frames = np.asarray(frames)
        if len(indices) != frames.shape[0]:
            raise ValueError("Give one index per frame.")
        for i in indices:
            self._check_index(i)
        indices = [int(i) for i in indices]
        if len(set(indices)) != len(indices):
            raise ValueError("Frame indices within a batch must be distinct.")
        if self._search is not None:
            room = self.settings.hot_pixel_frames - len(self._held)
            if room < len(indices):
                self._add_batch(indices[:room], frames[:room])  # ends the search (K frames in)
                self._add_batch(indices[room:], frames[room:])
                return [self.records[i] for i in indices]
        self._add_batch(indices, frames)
        return [self.records[i] for i in indices]

    def _add_batch(self, indices: list[int], frames: np.ndarray) -> None:
        results = self.engine.process_batch(frames)
        for i, f, r in zip(indices, frames, results):
            self._ingest(i, f, r)
        if self._search is not None:
            self._search_frames(indices, frames)

    # ------------------------------------------------------------- hot pixels
    def _search_frames(self, indices: list[int], frames: np.ndarray) -> None:
        """Search frames (at most K received in all) for hot pixels and keep their pixels; end
        the search when K frames, or every frame of the scan, are in."""
        for i, f in zip(indices, frames):
            self._search.add(f)
            self._held[i] = f.reshape(-1)[self._held_pixels]
        k = self.settings.hot_pixel_frames
        shape = self.settings.scan_shape
        if len(self._held) >= (k if shape is None else min(k, shape[0] * shape[1])):
            self._end_search()

    def _end_search(self) -> None:
        """Mask the hot pixels found; analyse the searched frames again if there are any."""
        if self._search is None:
            return
        hot, held = self._search.hot_pixels(), self._held
        self._search, self._held = None, {}
        self._mask_hot_pixels(hot)
        if hot.size == 0:
            return
        self.running_ccf = CcfAccumulator(self.settings.n_bins)
        size = self.geometry.shape[0] * self.geometry.shape[1]
        for index in sorted(held):
            frame = np.zeros(size, dtype=held[index].dtype)
            frame[self._held_pixels] = held[index]
            frame = frame.reshape(self.geometry.shape)
            self._ingest(index, frame, self.engine.process(frame))

    def _mask_hot_pixels(self, hot: np.ndarray) -> None:
        """Set :attr:`hot_pixels` and rebuild the engine and the cut with them masked."""
        self.hot_pixels = np.asarray(hot, dtype=np.int64)
        if self.hot_pixels.size:
            mask = np.zeros(self.geometry.shape, dtype=bool) if self.mask is None else self.mask.copy()
            mask.reshape(-1)[self.hot_pixels] = True
            self._build(mask)

    def _check_index(self, index: int) -> None:
        if int(index) != index or index < 0:
            raise ValueError(f"Frame index must be a non-negative integer, got {index!r}.")
        shape = self.settings.scan_shape
        if shape is not None and index >= shape[0] * shape[1]:
            raise ValueError(f"Frame index {index} is outside the {shape[0]}x{shape[1]} scan.")
        if int(index) in self.records:
            raise ValueError(f"Frame {index} was already added.")

    def _ingest(self, index: int, frame: np.ndarray, res: FrameXcca) -> FrameRecord:
        sl = np.array([(p.azimuth_deg, p.prominence) for p in res.peaks[0]], dtype=np.float64).reshape(-1, 2)
        al = np.array([(p.azimuth_deg, p.prominence) for p in res.peaks[1]], dtype=np.float64).reshape(-1, 2)
        rec = FrameRecord(index=index, sl_peaks=sl, al_peaks=al)
        if rec.candidate:
            rec.ccf = np.array(res.ccf[0], dtype=np.float64)
            self.running_ccf.add(rec.ccf)
            top = float(al[np.argmax(al[:, 1]), 0])
            if self._window_covered(res, top):
                rec.cut = FrameRecord.pack_cut(*self._cut.frame_cut(frame, top))
        self.records[index] = rec
        return rec

    def _window_covered(self, res: FrameXcca, azimuth: float) -> bool:
        """Whether the AL profile has data in most bins within the cut window of a peak."""
        w = res.profiles.weight[1]
        d = np.abs(np.mod(self.engine.azimuth_deg - azimuth + 180.0, 360.0) - 180.0)
        inside = d <= self.settings.cut_phi_half_width_deg
        return bool(np.mean(w[inside] > 0) >= self.settings.cut_min_coverage)

    # ------------------------------------------------------------------- merge
    def merge(self, other: "XccaAnalysis") -> "XccaAnalysis":
        """Add the frames of another analysis of the same setup (disjoint indices); returns self.

        Ends the hot-pixel search of both; they must have masked the same hot pixels.
        """
        if other.settings != self.settings:
            raise ValueError("Cannot merge XCCA analyses with different settings.")
        dup = set(self.records) & set(other.records)
        if dup:
            raise ValueError(f"Both analyses hold frame(s) {sorted(dup)[:5]}.")
        self._end_search()
        other._end_search()
        if not np.array_equal(self.hot_pixels, other.hot_pixels):
            raise ValueError("Cannot merge XCCA analyses that masked different hot pixels.")
        self.records.update(other.records)
        self.running_ccf.merge(other.running_ccf)
        return self

    def to_state(self) -> dict:
        """Plain-data state (lists and arrays) from which :meth:`from_state` rebuilds the analysis."""
        recs = [self.records[i] for i in sorted(self.records)]
        return {
            "settings": dict(self.settings.__dict__),
            "frames": [
                {
                    "index": r.index,
                    "sl_peaks": r.sl_peaks.copy(),
                    "al_peaks": r.al_peaks.copy(),
                    "ccf": None if r.ccf is None else r.ccf.copy(),
                    "cut_sum": None if r.cut_sum is None else r.cut_sum.copy(),
                    "cut_count": None if r.cut_count is None else r.cut_count.copy(),
                }
                for r in recs
            ],
            "running_ccf": self.running_ccf.to_state(),
            "hot_pixels": None if self.hot_pixels is None else self.hot_pixels.copy(),
            "hot_pixel_search": None if self._search is None else {
                "exceed": self._search.exceed.copy(),
                "n_frames": self._search.n_frames,
                "held": [{"index": i, "values": v.copy()} for i, v in sorted(self._held.items())],
            },
        }

    @classmethod
    def from_state(cls, state: dict, geometry: DetectorGeometry, mask: np.ndarray | None = None) -> "XccaAnalysis":
        """Rebuild an analysis from :meth:`to_state` output and the same geometry and mask."""
        settings = dict(state["settings"])
        if settings.get("scan_shape") is not None:
            settings["scan_shape"] = tuple(settings["scan_shape"])
        q_sl, q_al = settings.pop("q_sl"), settings.pop("q_al")
        scan_shape, step_um = settings.pop("scan_shape"), settings.pop("step_um")
        ana = cls(geometry, mask, q_sl, q_al, scan_shape, step_um, **settings)
        if state["hot_pixels"] is not None:
            ana._search, ana._held = None, {}
            ana._mask_hot_pixels(np.asarray(state["hot_pixels"], dtype=np.int64))
        else:
            search = state["hot_pixel_search"]
            ana._search.exceed[:] = np.asarray(search["exceed"], dtype=np.int64)
            ana._search.n_frames = int(search["n_frames"])
            ana._held = {int(h["index"]): np.asarray(h["values"]) for h in search["held"]}
        for f in state["frames"]:
            ana.records[int(f["index"])] = FrameRecord(
                index=int(f["index"]),
                sl_peaks=np.asarray(f["sl_peaks"], dtype=np.float64).reshape(-1, 2),
                al_peaks=np.asarray(f["al_peaks"], dtype=np.float64).reshape(-1, 2),
                ccf=None if f["ccf"] is None else np.asarray(f["ccf"], dtype=np.float64),
                cut=None if f["cut_sum"] is None else FrameRecord.pack_cut(f["cut_sum"], f["cut_count"]),
            )
        ana.running_ccf = CcfAccumulator.from_state(state["running_ccf"])
        return ana

    # ------------------------------------------------------------------ result
    def position(self, index: int) -> tuple[int, int]:
        """(row, column) of frame ``index`` in the raster: row-major, odd rows reversed if
        ``snake``; without a scan shape, row 0 and column ``index``."""
        if self.settings.scan_shape is None:
            return 0, int(index)
        return self._position(int(index), self.settings.scan_shape)

    def _position(self, index: int, shape: tuple[int, int]) -> tuple[int, int]:
        row, col = divmod(index, shape[1])
        if self.settings.snake and row % 2 == 1:
            col = shape[1] - 1 - col
        return row, col

    def details(self) -> XccaDetails:
        """Everything :meth:`result` derives, with intermediate values (for plots and tests).

        Ends the hot-pixel search (frames added later are analysed with its mask).
        """
        self._end_search()
        s = self.settings
        recs = [self.records[i] for i in sorted(self.records)]
        cands = [r for r in recs if r.candidate]
        top_al = np.array([r.al_peaks[:, 1].max() for r in cands]) if cands else np.zeros(0)
        threshold = s.min_relative_al_prominence * float(np.median(top_al)) if top_al.size else 0.0
        selected = [r for r, t in zip(cands, top_al) if t >= threshold]

        acc = CcfAccumulator(s.n_bins)
        for r in selected:
            acc.add(r.ccf)
        ccf = acc.mean()

        pair = sl_pair_angle(r.sl_peaks[:, 0] for r in recs)
        fit = None
        if np.isfinite(ccf).sum() >= 20 and selected:
            betas = [pair.beta_deg, 90.0 - pair.beta_deg] if pair is not None else None
            try:
                fit = fit_superlattice(self.delta_deg, ccf, betas, bcc_tolerance=s.bcc_tolerance)
            except (ValueError, RuntimeError, np.linalg.LinAlgError):
                fit = None
        if fit is not None:
            beta = fit.beta_deg
        elif pair is not None:
            beta = pair.beta_deg  # no CCF: assume β < 45° (c/a < √2)
        else:
            beta = None

        psi: dict[int, float] = {}
        orientation: dict[int, tuple[float, ...]] = {}
        selected_idx = {r.index for r in selected}
        if beta is not None:
            for r in recs:
                sc = sl_orientation_candidates(r.sl_peaks[:, 0], r.sl_peaks[:, 1], beta, s.orientation_tolerance_deg)
                if not sc:
                    continue
                m = None
                if r.index in selected_idx:
                    ac = al_orientation_candidates(r.al_peaks[:, 0], r.al_peaks[:, 1])
                    m = misorientation(sc, ac, s.psi_max_deg)
                    if m is not None:
                        psi[r.index] = m.psi_deg
                if len(sc) == 1 or sc[1].score < 0.8 * sc[0].score:
                    orientation[r.index] = (sc[0].u_deg,)
                elif m is not None:
                    orientation[r.index] = (m.u_sl_deg,)
                else:
                    orientation[r.index] = (sc[0].u_deg, sc[1].u_deg)

        shape = s.scan_shape or (1, (max(self.records) + 1) if self.records else 1)
        omap = np.full(shape + (2,), np.nan)
        for i, cands_u in orientation.items():
            row, col = self._position(i, shape)
            omap[row, col, : len(cands_u)] = cands_u
        domains = segment_domains(omap, s.domain_tolerance_deg, s.domain_min_positions, s.step_um)

        cut_sum = np.zeros_like(self._cut.sum)
        cut_count = np.zeros_like(self._cut.count)
        n_cut = 0
        for r in selected:
            cut = r.unpack_cut()
            if cut is not None:
                cut_sum += cut[0]
                cut_count += cut[1]
                n_cut += 1
        widths = None
        cut_mean = None
        if n_cut:
            with np.errstate(invalid="ignore", divide="ignore"):
                cut_mean = np.where(cut_count > 0, cut_sum / np.maximum(cut_count, 1), np.nan)
            try:
                widths = fit_peak_widths(cut_mean, self._cut.q_centers, self._cut.dphi_centers)
            except (ValueError, RuntimeError):
                widths = None
        return XccaDetails(
            records=tuple(recs),
            selected=tuple(r.index for r in selected),
            ccf=ccf,
            fit=fit,
            pair_angle=pair,
            beta_deg=beta,
            psi=psi,
            orientation=orientation,
            domains=domains,
            shape=shape,
            widths=widths,
            cut_mean=cut_mean,
            n_cut_frames=n_cut,
            hot_pixels=None if s.hot_pixel_frames == 0 else self.hot_pixels.copy(),
        )

    def result(self, details: XccaDetails | None = None) -> dict:
        """The ``mc-beamline xcca`` RESULT.json content (docs/results.md) as a JSON-ready dict.

        ``details`` may pass a :meth:`details` computed just before (it is the expensive part).
        """
        d = self.details() if details is None else details
        fit = d.fit
        if fit is not None:
            superlattice = {"lattice": fit.lattice, "c_over_a": fit.c_over_a,
                            "c_over_a_err": _c_over_a_err(fit.c_over_a, fit, d.pair_angle), "beta_deg": fit.beta_deg}
            peaks = fit.peaks_deg
        elif d.beta_deg is not None:
            ca = c_over_a_from_beta(d.beta_deg)
            lattice = "bcc" if abs(ca - 1.0) <= self.settings.bcc_tolerance else "bct"
            superlattice = {"lattice": lattice, "c_over_a": ca, "c_over_a_err": _c_over_a_err(ca, None, d.pair_angle),
                            "beta_deg": bct_beta_deg(ca)}
            peaks = []
        else:
            superlattice = {"lattice": None, "c_over_a": None, "c_over_a_err": None, "beta_deg": None}
            peaks = []
        psi_values = np.array([d.psi[i] for i in sorted(d.psi)])
        mis = {
            "mean": _json_float(psi_values.mean()) if psi_values.size else None,
            "mean_err": _json_float(psi_values.std(ddof=1) / math.sqrt(psi_values.size)) if psi_values.size > 1
            else None,
            "std": _json_float(psi_values.std(ddof=1)) if psi_values.size > 1 else None,
            "n": int(psi_values.size),
        }
        widths = d.widths
        labels = d.domains.labels
        selected = set(d.selected)
        frames = []
        for r in d.records:
            row, col = self._position(r.index, d.shape)
            lab = int(labels[row, col])
            frames.append(
                {
                    "index": int(r.index),
                    "selected": r.index in selected,
                    "sl_peaks_deg": [float(v) for v in r.sl_peaks[:, 0]],
                    "al_peaks_deg": [float(v) for v in r.al_peaks[:, 0]],
                    "psi_deg": _json_float(d.psi.get(r.index)),
                    "domain": lab if lab >= 0 else None,
                }
            )
        return {
            "n_frames": len(d.records),
            "n_selected": len(selected),
            "ccf": {
                "delta_deg": [float(v) for v in self.delta_deg],
                "value": [_json_float(v) for v in d.ccf],
            },
            "ccf_peaks_deg": [float(v) for v in peaks],
            "superlattice": {k: (_json_float(v) if isinstance(v, float) else v) for k, v in superlattice.items()},
            "orientational_disorder_fwhm_deg": _json_float(widths.disorder_fwhm_deg) if widths else None,
            "orientational_disorder_fwhm_deg_err": _json_float(widths.disorder_fwhm_err_deg) if widths else None,
            "misorientation_deg": mis,
            "domains": {"count": int(d.domains.count), "mean_area_um2": _json_float(d.domains.mean_area_um2)},
            "frames": frames,
            "corrections": {**self.corrections.as_json(), "hot_pixels": self._hot_pixels_json(d.hot_pixels)},
        }

    def _hot_pixels_json(self, hot: np.ndarray | None) -> dict | None:
        """``{"count": int, "pixels": [[row, column], ...]}`` (at most MAX_LISTED_HOT_PIXELS), or None."""
        if hot is None:
            return None
        rows, cols = np.divmod(hot[:MAX_LISTED_HOT_PIXELS], self.geometry.shape[1])
        return {"count": int(hot.size), "pixels": [[int(r), int(c)] for r, c in zip(rows, cols)]}


__all__ = ["XccaAnalysis", "XccaDetails", "XccaSettings", "FrameRecord"]
