"""Indexing a SAXS curve the way an expert does: on the structure factor S(q) = I(q) / P(q).

Bragg peaks on I(q) = c P̄(q) S(q) are pulled towards low q by the steep form factor and
vanish next to its minima, so their positions and the pattern of present reflections
mislead (111/222/333 of fcc look lamellar; the 200 beside the first minimum is missing).
:func:`index_structure_factor`:

1. finds the Bragg peaks of I(q) (:func:`~mc_beamline.analysis.saxs.indexing.find_bragg_peaks`)
   and indexes them (:func:`~mc_beamline.analysis.saxs.indexing.index_peaks`);
2. fits a polydisperse sphere form factor
   (:func:`~mc_beamline.analysis.saxs.form_factor.fit_sphere_form_factor`) to the whole
   curve and, where there are peaks, above ``LOW_Q_FRACTION`` × the first one (below it
   S(q) of a crystal or dense fluid is ≪ 1), there with R ≥ ``PACKED_RADIUS[0]`` × 2π / q₁
   (no lattice with its first peak at q₁ has nearest neighbours closer than 2π / q₁); the
   second fit is taken where it fits the curve above that q clearly better
   (``WHOLE_CURVE_COST_MARGIN``), the whole-curve radius is below that bound, or the
   curve below that q lies well under the whole-curve fit (``DEPRESSED_FRACTION``);
3. finds the peaks of S(q) where the form factor keeps at least
   ``MIN_VISIBILITY`` of its envelope
   (:func:`~mc_beamline.analysis.saxs.indexing.find_structure_peaks`) and indexes them with
   the reliability of each peak ramping from 0 to 1 between ``MIN_VISIBILITY`` and twice
   it and, for weak peaks, in proportion to their height (``WEAK_PEAK_FRACTION``),
   missing reflections excused in proportion to how deep in a form-factor minimum they
   fall, and the peaks' areas on S(q) (height × FWHM) compared with the reflection
   intensities of each lattice;
4. returns the S(q) indexing where it explains its peaks, else the I(q) indexing (a form
   factor that does not fit leaves an S(q) without a lattice, while I(q) may have one);
5. refits the form factor with R between ``PACKED_RADIUS`` × the lattice's
   nearest-neighbour distance where the first fit put spheres that do not fit the lattice,
   and indexes S(q) again with it, as long as that changes the lattice to one the new
   spheres do not fit either; where it goes round in a circle, the refit that fits the
   curve best is kept, with the lattice its spheres fit;
6. reports as the form factor of a lattice its fit to the curve averaged over shells of q
   ``SHELL_WIDTH`` × q₁ wide, with R inside the lattice (``PACKED_RADIUS``): between
   sharp peaks S(q) is far below 1, so the robust fit to the curve itself is pulled
   (polydispersity to 0, R too large), while averaged over a shell that holds several
   reflections S is close to 1 (the peaks carry what is missing between them).

Units: q in nm⁻¹, lengths in nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mc_beamline.analysis.saxs.form_factor import SphereFit, fit_shell_averaged_form_factor, fit_sphere_form_factor
from mc_beamline.analysis.saxs.indexing import (
    MAX_INDEXED_PEAKS,
    BraggPeak,
    IndexingResult,
    LatticeFit,
    _noise,
    find_bragg_peaks,
    find_structure_peaks,
    index_peaks,
    nearest_neighbour_nm,
)

LOW_Q_FRACTION = 0.85
"""The form factor is fitted above this fraction of the first Bragg peak's q."""
WHOLE_CURVE_COST_MARGIN = 5.0
"""The form factor fitted above the first peak replaces the whole-curve fit only where its
robust cost there (Σ ln(1 + r²), n points) is lower by more than this × √n: S(q) ≪ 1 below
the peaks spoils the whole-curve fit, a dilute colloid's form-factor wiggles taken for
peaks do not."""
PACKED_RADIUS = (0.3, 0.55)
"""A sphere radius outside these fractions of the lattice's nearest-neighbour distance does
not belong to the indexed supercrystal (NCs in it nearly touch: 2R ≲ d_nn, with ligand
shells up to about 1.7 × the core); the form factor is then refitted with R inside them."""
WEAK_PEAK_FRACTION = 0.1
"""A maximum of S(q) lower than this fraction of the median of the five highest is weak: its
reliability falls in proportion (diffuse features and ripples of a paracrystal, noise
where the form factor is small)."""
DEPRESSED_FRACTION = 1.0 / 3.0
"""Where the curve below the first Bragg peak lies, in the median, under this fraction of
the form factor fitted to the whole curve, S(q) ≪ 1 there (a supercrystal, a dense
fluid): the whole-curve fit is a compromise with that depression, and the fit above the
first peak is taken."""
MIN_VISIBILITY = 0.2
"""Maxima of S(q) where the form factor keeps less of its envelope are not peaks."""
SHELL_WIDTH = 0.5
"""Width of the q shells, as a fraction of the first peak's q, over which the curve is
averaged for the size of the spheres in a lattice (step 6): wide enough to hold several
reflections above the first few orders."""
PACKED_REFITS = 3
"""At most this many refits of the form factor inside an indexed lattice (step 5): each
may change the lattice, and the next refit uses the one then indexed."""


@dataclass(frozen=True)
class StructureIndexing:
    """Outcome of :func:`index_structure_factor`.

    Attributes
    ----------
    peaks : the Bragg peaks that were indexed (on S(q) or on I(q), see ``source``).
    indexing : their indexing (``.best`` None: no lattice).
    source : "S(q)" or "I(q)".
    form_factor : the fitted sphere form factor (None where it could not be fitted).
    """

    peaks: tuple[BraggPeak, ...]
    indexing: IndexingResult
    source: str
    form_factor: SphereFit | None


def _index(peaks: list[BraggPeak], q: np.ndarray, **kwargs) -> IndexingResult:
    strongest = sorted(sorted(peaks, key=lambda p: -p.snr)[:MAX_INDEXED_PEAKS], key=lambda p: p.q_nm)
    extra = {}
    if "peak_reliability" in kwargs:
        rel = dict(zip([p.q_nm for p in peaks], kwargs.pop("peak_reliability")))
        extra["peak_reliability"] = [rel[p.q_nm] for p in strongest]
        # peaks of S(q): their areas are the lattice's reflection intensities
        extra["peak_area"] = [p.height * p.fwhm_nm for p in strongest]
    return index_peaks([p.q_nm for p in strongest], (float(q[0]), float(q[-1])),
                       peak_fwhm_nm=[p.fwhm_nm for p in strongest], **kwargs, **extra)


def index_structure_factor(q_nm: np.ndarray, intensity: np.ndarray,
                           sigma: np.ndarray | None = None) -> StructureIndexing:
    """Bragg peaks of a SAXS curve indexed on S(q) = I / P (see the module docstring)."""
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    s = _noise(i) if sigma is None else np.asarray(sigma, dtype=float)
    i_peaks = find_bragg_peaks(q, i, s)
    i_result = _index(i_peaks, q)
    # every lattice has its nearest neighbours at least 2π / q of its first reflection
    # apart (sc; fcc, bcc 2π √1.5 / q), so spheres packed in it are at least
    # PACKED_RADIUS[0] × 2π / q₁ in radius: smaller ones would be a form factor that
    # flattened to fit the Bragg peaks, not the particles (the fit above the first peak,
    # kept above that radius, replaces a whole-curve fit below it)
    r_min = PACKED_RADIUS[0] * 2.0 * math.pi / i_peaks[0].q_nm if i_peaks else 0.0
    ff = fit_sphere_form_factor(q, i, s)
    if i_peaks:
        high = fit_sphere_form_factor(q, i, s, q_min_nm=LOW_Q_FRACTION * i_peaks[0].q_nm, min_radius_nm=r_min)
        if high is not None:
            n_high = int(np.count_nonzero((q >= high.q_min_nm) & (i > 0)))
            if ff is None or ff.radius_nm < r_min or _depressed(ff, q, i, high.q_min_nm) \
                    or (ff.robust_cost(q, i, s, high.q_min_nm) - high.robust_cost(q, i, s, high.q_min_nm)
                        > WHOLE_CURVE_COST_MARGIN * np.sqrt(n_high)):
                ff = high
    if ff is None:
        return StructureIndexing(tuple(i_peaks), i_result, "I(q)", None)
    s_peaks, s_result = _index_structure_peaks(q, i, s, ff)
    if s_result.best is not None or i_result.best is None:
        peaks, result, source = tuple(s_peaks), s_result, "S(q)"
    else:
        peaks, result, source = tuple(i_peaks), i_result, "I(q)"
    if peaks:
        peaks, result, source, ff = _fitted_to_lattice(q, i, s, ff, peaks, result, source)
        d_nn = nearest_neighbour_nm(result.best) if result.best is not None else None
        if d_nn is not None:
            # the size, from the curve averaged over shells of q in which S averages to 1
            shell = fit_shell_averaged_form_factor(
                q, i, s, q_min_nm=LOW_Q_FRACTION * peaks[0].q_nm, width_nm=SHELL_WIDTH * peaks[0].q_nm,
                radius_range_nm=(PACKED_RADIUS[0] * d_nn, PACKED_RADIUS[1] * d_nn))
            ff = shell or ff
    return StructureIndexing(peaks, result, source, ff)


def _packs(ff: SphereFit, fit: LatticeFit | None) -> bool:
    """Whether spheres of the fitted radius fit the lattice (:data:`PACKED_RADIUS` of its
    nearest-neighbour distance); True where there is no lattice or it is lamellar."""
    d_nn = nearest_neighbour_nm(fit) if fit is not None else None
    return d_nn is None or PACKED_RADIUS[0] * d_nn <= ff.radius_nm <= PACKED_RADIUS[1] * d_nn


def _fitted_to_lattice(q: np.ndarray, i: np.ndarray, s: np.ndarray, ff: SphereFit, peaks: tuple[BraggPeak, ...],
                       result: IndexingResult, source: str) -> tuple[tuple[BraggPeak, ...], IndexingResult, str,
                                                                     SphereFit]:
    """Step 5 of the module docstring: (peaks, indexing, source, form factor) with a form
    factor whose spheres fit the lattice indexed with it.

    Spheres that do not fit the lattice they are in mean the form factor fit failed: it is
    refitted with R inside the lattice and S(q) indexed again, which may change the lattice
    and with it the radii that fit. Where that leads back to a lattice already refitted for
    (or after :data:`PACKED_REFITS` refits), the refit that fits the curve best (robust
    cost above the first peak) is kept and S(q) indexed with it among the lattices its
    spheres fit."""
    q_min = LOW_Q_FRACTION * peaks[0].q_nm
    tried: dict[str, SphereFit] = {}
    while not _packs(ff, result.best):
        lattice = result.best.lattice
        if lattice in tried or len(tried) == PACKED_REFITS:
            ff = min(tried.values(), key=lambda f: f.robust_cost(q, i, s, q_min))
            s_peaks, s_result = _index_structure_peaks(q, i, s, ff, packed=True)
            if s_result.best is not None:
                peaks, result, source = tuple(s_peaks), s_result, "S(q)"
            break
        d_nn = nearest_neighbour_nm(result.best)
        packed = fit_sphere_form_factor(q, i, s, q_min_nm=q_min,
                                        radius_range_nm=(PACKED_RADIUS[0] * d_nn, PACKED_RADIUS[1] * d_nn))
        if packed is None:
            break
        tried[lattice] = ff = packed
        s_peaks, s_result = _index_structure_peaks(q, i, s, ff)
        if s_result.best is not None:
            peaks, result, source = tuple(s_peaks), s_result, "S(q)"
    return peaks, result, source, ff


def _depressed(ff: SphereFit, q: np.ndarray, i: np.ndarray, q_peak_nm: float) -> bool:
    """Whether the curve below ``q_peak_nm`` lies, in the median, under
    :data:`DEPRESSED_FRACTION` of the form factor ``ff`` fitted to it: S(q) ≪ 1 there."""
    low = (q < q_peak_nm) & (i > 0)
    if not low.any():
        return False
    return bool(np.median(i[low] / (ff.form_factor(q[low]) + ff.background)) < DEPRESSED_FRACTION)


def _index_structure_peaks(q: np.ndarray, i: np.ndarray, s: np.ndarray, ff: SphereFit,
                           packed: bool = False) -> tuple[list[BraggPeak], IndexingResult]:
    """Peaks of S(q) = (I − b) / (c P̄) and their indexing (step 3 of the module docstring);
    ``packed``: among the lattices the form factor's spheres fit (:data:`PACKED_RADIUS`),
    where one is accepted."""
    s_q, s_sigma = ff.structure_factor(q, i, s)
    visibility = ff.visibility(q)
    s_peaks = find_structure_peaks(q, s_q, s_sigma, visibility, min_visibility=MIN_VISIBILITY)
    rel = np.clip(ff.visibility(np.array([p.q_nm for p in s_peaks])) / MIN_VISIBILITY - 1.0, 0.0, 1.0)
    if s_peaks:
        heights = np.array([p.height for p in s_peaks])
        strong = float(np.median(np.sort(heights)[-5:]))
        rel = np.minimum(rel, np.clip(heights / (WEAK_PEAK_FRACTION * strong), 0.0, 1.0))
    options = dict(peak_reliability=rel, visibility=lambda g: np.interp(g, q, visibility))
    if packed:
        # spheres of radius R sit in a lattice whose nearest neighbours are R / PACKED_RADIUS[1]
        # to R / PACKED_RADIUS[0] apart
        among = _index(s_peaks, q, nearest_neighbour_range_nm=(ff.radius_nm / PACKED_RADIUS[1],
                                                                ff.radius_nm / PACKED_RADIUS[0]), **options)
        if among.best is not None:
            return s_peaks, among
    return s_peaks, _index(s_peaks, q, **options)


__all__ = ["DEPRESSED_FRACTION", "LOW_Q_FRACTION", "PACKED_RADIUS", "PACKED_REFITS", "SHELL_WIDTH", "nearest_neighbour_nm", "MIN_VISIBILITY", "WEAK_PEAK_FRACTION", "WHOLE_CURVE_COST_MARGIN", "StructureIndexing", "index_structure_factor"]
