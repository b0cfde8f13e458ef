"""PNG figures of analysis results (matplotlib, Agg, no pyplot state: safe in worker threads)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mc_beamline.analysis.series.assembly_series import SymmetryTrace
    from mc_beamline.analysis.series.flow_conditions import MscMap
    from mc_beamline.analysis.xcca.pipeline import XccaAnalysis, XccaDetails


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def xcca_figure(analysis: XccaAnalysis, details: XccaDetails, path: Path) -> Path:
    """Averaged CCF with the fitted model's peak positions, SL orientation map and domain map.

    ``details`` is ``analysis.details()``. Returns ``path`` (written atomically).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _new_figure(15, 4.6)
    ax_ccf, ax_map, ax_dom = fig.subplots(1, 3)

    delta = analysis.delta_deg
    ccf = details.ccf
    ax_ccf.plot(delta, ccf, lw=1, color="k", label=f"averaged CCF ({len(details.selected)} frames)")
    fit = details.fit
    if fit is not None:
        for peak in fit.peaks_deg:
            ax_ccf.axvline(peak, color="tab:red", lw=0.8, ls="--")
        ax_ccf.plot([], [], color="tab:red", ls="--", label=f"{fit.lattice} c/a = {fit.c_over_a:.3f}")
    ax_ccf.set_xlim(-180, 180)
    ax_ccf.set_xticks(range(-180, 181, 60))
    ax_ccf.set_xlabel("Δ = φ(AL) − φ(SL) (deg)")
    ax_ccf.set_ylabel("normalised CCF")
    ax_ccf.legend(loc="upper right", fontsize=8)
    ax_ccf.set_title(f"C(q_SL={analysis.settings.q_sl:g}, q_AL={analysis.settings.q_al:g} nm⁻¹, Δ)")

    shape = details.shape
    orientation = np.full(shape, np.nan)
    for index, candidates in details.orientation.items():
        orientation[analysis.position(index)] = candidates[0] % 180.0
    step = analysis.settings.step_um or 1.0
    extent = (0, shape[1] * step, 0, shape[0] * step)
    im = ax_map.imshow(orientation, origin="lower", cmap="twilight", vmin=0, vmax=180, extent=extent,
                       interpolation="nearest")
    fig.colorbar(im, ax=ax_map, label="SL [1-10] azimuth mod 180° (deg)")
    ax_map.set_title("superlattice orientation map")
    unit = "µm" if analysis.settings.step_um else "points"
    ax_map.set_xlabel(f"x ({unit})")
    ax_map.set_ylabel(f"y ({unit})")

    labels = np.asarray(details.domains.labels, dtype=float)
    labels[labels < 0] = np.nan
    ax_dom.imshow(labels % 20, origin="lower", cmap="tab20", extent=extent, interpolation="nearest")
    ax_dom.set_title(f"domains: {details.domains.count}")
    ax_dom.set_xlabel(f"x ({unit})")
    return _save(fig, path)


def xcca_running_figure(analysis, path: Path) -> Path:
    """Cheap live view while frames arrive: running averaged CCF and the SL peak azimuth map.

    Uses only what each frame already produced (no cross-frame fitting), so it can be
    redrawn during a scan. The map shows the strongest SL peak's azimuth mod 90°.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _new_figure(10, 4.6)
    ax_ccf, ax_map = fig.subplots(1, 2)
    acc = analysis.running_ccf
    ax_ccf.plot(analysis.delta_deg, acc.mean(), lw=1, color="k")
    ax_ccf.set_xlim(-180, 180)
    ax_ccf.set_xticks(range(-180, 181, 60))
    ax_ccf.set_xlabel("Δ = φ(AL) − φ(SL) (deg)")
    ax_ccf.set_ylabel("normalised CCF")
    ax_ccf.set_title(f"running CCF, {len(analysis.records)} frames so far")
    shape = analysis.settings.scan_shape or (1, max(analysis.records, default=0) + 1)
    azimuth = np.full(shape, np.nan)
    for index, record in list(analysis.records.items()):
        if len(record.sl_peaks):
            strongest = record.sl_peaks[np.argmax(record.sl_peaks[:, 1]), 0]
            azimuth[analysis.position(index)] = strongest % 90.0
    im = ax_map.imshow(azimuth, origin="lower", cmap="twilight", vmin=0, vmax=90, interpolation="nearest")
    fig.colorbar(im, ax=ax_map, label="strongest SL peak azimuth mod 90° (deg)")
    ax_map.set_title("superlattice peaks (live)")
    ax_map.set_xlabel("column")
    ax_map.set_ylabel("row")
    return _save(fig, path)


def msc_map_figure(msc_map: MscMap, path: Path) -> Path:
    """The "MSC map" of a flow series: which MSC families and NC sizes each condition gave.

    ``msc_map`` is :meth:`~mc_beamline.analysis.series.flow_conditions.FlowSeriesAnalysis.msc_map`.
    Rows are (T_nuc, T_growth), columns reaction times; in each cell one marker per MSC
    family found (area ∝ absorbance, colour = family), and the NC diameter (nm) as the
    background colour. Returns ``path`` (written atomically).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, times, families = msc_map.rows, msc_map.reaction_times_s, msc_map.families
    msc, nc = msc_map.msc_absorbance, msc_map.nc_diameter_nm
    fig = _new_figure(2.0 + 1.3 * max(len(times), 2), 1.5 + 0.6 * max(len(rows), 2))
    ax = fig.subplots()
    im = ax.imshow(nc, origin="lower", cmap="viridis", aspect="auto", interpolation="nearest",
                   extent=(-0.5, len(times) - 0.5, -0.5, len(rows) - 0.5))
    fig.colorbar(im, ax=ax, label="NC diameter (nm)")
    colours = ["tab:purple", "tab:blue", "tab:cyan", "tab:orange", "tab:red"]
    top = np.nanmax(msc) if np.any(np.isfinite(msc)) and np.nanmax(msc) > 0 else 1.0
    width = 0.8 / max(len(families), 1)
    for k, family in enumerate(families):
        ii, jj = np.nonzero(np.nan_to_num(msc[:, :, k]) > 0)
        ax.scatter(jj - 0.4 + width * (k + 0.5), ii, s=300 * msc[ii, jj, k] / top + 10,
                   color=colours[k % len(colours)], edgecolor="k", linewidth=0.5, label=family)
    unmeasured = np.all(np.isnan(msc), axis=2)
    for i, j in zip(*np.nonzero(unmeasured)):
        ax.text(j, i, "–", ha="center", va="center", color="0.5")
    ax.set_xticks(range(len(times)), [f"{t:g}" for t in times])
    ax.set_yticks(range(len(rows)), [f"{tn:g} / {tg:g}" for tn, tg in rows])
    ax.set_xlabel("reaction time (s)")
    ax.set_ylabel("T_nuc / T_growth (°C)")
    ax.set_title(f"MSC map: {int(np.sum(~unmeasured))} of {unmeasured.size} conditions measured")
    if len(families):
        ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=8, title="MSC family")
    return _save(fig, path)


def assembly_figure(t_s, fractions, symmetry: SymmetryTrace | None, title: str, path: Path) -> Path:
    """An assembly series: NC fractions per phase and the superlattice ring's C_4, C_6, C_12 vs time.

    ``t_s``: frame times (s since the flocculant addition began); ``fractions``: (n, 3) dilute,
    dense, crystal for the first n frames, or None; ``symmetry``: C_n of the first frames and
    the symmetry change (its ``time_s`` is marked), or None. Returns ``path`` (written atomically).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = int(fractions is not None) + int(symmetry is not None)
    fig = _new_figure(6.5, 1.0 + 2.4 * max(panels, 1))
    axes = list(np.atleast_1d(fig.subplots(max(panels, 1), 1, sharex=True)))
    t = np.asarray(t_s, dtype=float)
    if fractions is not None:
        ax = axes.pop(0)
        f = np.asarray(fractions, dtype=float)
        for k, (label, colour) in enumerate((("dilute fluid", "tab:blue"), ("dense fluid", "tab:orange"),
                                              ("supercrystal", "tab:green"))):
            ax.plot(t[: f.shape[0]], f[:, k], "o-", ms=3, color=colour, label=label)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("fraction of NCs")
        ax.legend(fontsize=8, loc="center right")
    if symmetry is not None:
        ax = axes.pop(0)
        for n, c, colour in ((4, symmetry.c4, "tab:red"), (6, symmetry.c6, "tab:purple"),
                             (12, symmetry.c12, "tab:gray")):
            ax.plot(t[: c.size], c, "o-", ms=3, color=colour, label=f"C$_{{{n}}}$")
        change = symmetry.change
        if change is not None and change.time_s is not None:
            ax.axvline(change.time_s, color="k", ls="--", lw=1,
                       label=f"{change.from_order}-fold → {change.to_order}-fold")
        ax.set_ylabel("Fourier component")
        ax.legend(fontsize=8, loc="center right")
    fig.axes[-1].set_xlabel("time since flocculant addition (s)")
    fig.axes[0].set_title(title)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """Write atomically, so a reader never sees half a PNG."""
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)
    return path

