"""Grain (domain) segmentation of a raster orientation map.

Neighbouring raster positions (4-connectivity) belong to the same domain when both have an
orientation and the two differ by at most ``tolerance_deg`` (orientations modulo 180°).
A position may carry two candidate orientations (the mirror ambiguity of a pattern whose
visible peaks are one centrosymmetric pair). First, such a position takes the candidate
that more of its unambiguous neighbours agree with (repeated until nothing changes; ties
stay open). Then two neighbours agree when they have the same number of candidates and
each candidate of one matches one of the other's, so a still ambiguous position (e.g. a
boundary position seeing two grains equally) joins only neighbours with the same
candidate pair and never bridges two grains.
Domains are the connected components with at least ``min_positions`` positions; smaller
components (grain boundaries, noise) get no domain. Areas are positions × step² in µm².
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mc_beamline.analysis.xcca.structure import wrap90


@dataclass(frozen=True)
class DomainMap:
    """Result of :func:`segment_domains`.

    Attributes
    ----------
    labels : int array of the scan shape, domain index 0 … count-1, -1 where none.
    count : number of domains.
    sizes : positions per domain (count,).
    mean_area_um2 : mean domain area in µm², None without a step size or domains.
    """

    labels: np.ndarray
    count: int
    sizes: np.ndarray
    mean_area_um2: float | None


def resolve_ambiguous(orientation_deg: np.ndarray, tolerance_deg: float = 3.0, max_rounds: int = 50) -> np.ndarray:
    """Pick, at positions with several candidates, the one most unambiguous neighbours share.

    ``orientation_deg`` is (rows, columns, K) with NaN padding; returns a new array in which
    resolved positions keep only the chosen candidate. Ties stay unresolved.
    """
    o = np.array(orientation_deg, dtype=np.float64, copy=True)
    rows, cols, k = o.shape
    if k < 2:
        return o
    shifts = ((0, 1), (0, -1), (1, 0), (-1, 0))
    for _ in range(max_rounds):
        n_cand = np.isfinite(o).sum(axis=-1)
        unique = n_cand == 1
        first = np.where(unique, np.nanmax(np.where(np.isfinite(o), o, -np.inf), axis=-1), np.nan)
        votes = np.zeros((rows, cols, k))
        for dr, dc in shifts:
            nb = np.full((rows, cols), np.nan)
            src = first[max(dr, 0) : rows + min(dr, 0), max(dc, 0) : cols + min(dc, 0)]
            nb[max(-dr, 0) : rows + min(-dr, 0), max(-dc, 0) : cols + min(-dc, 0)] = src
            with np.errstate(invalid="ignore"):
                votes += np.abs(wrap90(o - nb[..., None])) <= tolerance_deg
        ambiguous = n_cand > 1
        best = np.argmax(votes, axis=-1)
        top = np.take_along_axis(votes, best[..., None], axis=-1)[..., 0]
        tied = (votes == top[..., None]).sum(axis=-1) > 1
        pick = ambiguous & (top > 0) & ~tied
        if not pick.any():
            break
        chosen = np.take_along_axis(o, best[..., None], axis=-1)[..., 0]
        o[pick] = np.nan
        o[pick, 0] = chosen[pick]
    return o


def segment_domains(
    orientation_deg: np.ndarray,
    tolerance_deg: float = 3.0,
    min_positions: int = 3,
    step_um: float | tuple[float, float] | None = None,
) -> DomainMap:
    """Connected components of a 2-D orientation map (degrees, NaN = no orientation).

    Parameters
    ----------
    orientation_deg : (rows, columns) orientation per raster position, degrees modulo 180,
        or (rows, columns, K) candidate orientations padded with NaN.
    tolerance_deg : largest orientation difference between neighbours of one domain.
    min_positions : smallest number of positions of a domain.
    step_um : raster step in µm (one value, or (row step, column step)) for areas.
    """
    o = np.asarray(orientation_deg, dtype=np.float64)
    if o.ndim == 2:
        o = o[..., None]
    if o.ndim != 3:
        raise ValueError("The orientation map must be (rows, columns) or (rows, columns, candidates).")
    o = resolve_ambiguous(o, tolerance_deg)
    rows, cols, _ = o.shape
    n_cand = np.isfinite(o).sum(axis=-1)
    has = n_cand > 0
    idx = np.arange(rows * cols).reshape(rows, cols)
    edges_a, edges_b = [], []
    for a, b, na, nb, ia, ib in (
        (o[:, :-1], o[:, 1:], n_cand[:, :-1], n_cand[:, 1:], idx[:, :-1], idx[:, 1:]),
        (o[:-1, :], o[1:, :], n_cand[:-1, :], n_cand[1:, :], idx[:-1, :], idx[1:, :]),
    ):
        with np.errstate(invalid="ignore"):
            close = np.abs(wrap90(a[..., :, None] - b[..., None, :])) <= tolerance_deg
        a_matched = close.any(axis=-1).sum(axis=-1)  # candidates of a with a partner in b
        b_matched = close.any(axis=-2).sum(axis=-1)
        ok = has.ravel()[ia] & has.ravel()[ib] & (na == nb) & (a_matched >= na) & (b_matched >= nb)
        edges_a.append(ia[ok])
        edges_b.append(ib[ok])
    ea = np.concatenate(edges_a)
    eb = np.concatenate(edges_b)
    n_pos = rows * cols
    from scipy.sparse import coo_matrix  # only for the result: not before the first frame
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(ea.size), (ea, eb)), shape=(n_pos, n_pos))
    _, comp = connected_components(graph, directed=False)
    comp = np.where(has.ravel(), comp, -1)
    labels = np.full(n_pos, -1, dtype=np.int64)
    valid = comp >= 0
    uniq, inverse, counts = np.unique(comp[valid], return_inverse=True, return_counts=True)
    big = counts >= min_positions
    # number the domains in raster order of their first position (deterministic)
    first = np.full(uniq.size, n_pos)
    np.minimum.at(first, inverse, np.flatnonzero(valid))
    order = np.argsort(first, kind="stable")
    new_id = np.full(uniq.size, -1)
    k = 0
    for u in order:
        if big[u]:
            new_id[u] = k
            k += 1
    labels[valid] = new_id[inverse]
    labels = labels.reshape(rows, cols)
    sizes = np.bincount(labels[labels >= 0], minlength=k) if k else np.zeros(0, int)
    area = None
    if step_um is not None and k:
        sy, sx = (step_um, step_um) if np.isscalar(step_um) else step_um
        area = float(sizes.mean() * sy * sx)
    return DomainMap(labels=labels, count=int(k), sizes=sizes, mean_area_um2=area)
