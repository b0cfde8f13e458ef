"""`mc-beamline demo`: the simulated beamline end to end on embedded defaults.

Starts the simulated IOC and an embedded Tiled server for a data directory, runs the
experiment through a RunEngine whose documents go to Tiled, checks that the stored run
reads back, prints a summary and one ``uid: <uid>`` line per run, and writes figures.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

QUICK_RASTER = (7, 9)


@dataclass
class RasterDemoResult:
    """What the raster demo produced: run uid, points, wall time (s) and figure paths."""

    uid: str
    n_points: int
    seconds: float
    figures: list[Path]


@contextlib.contextmanager
def simulated_beamline(data_dir: Path, *, geometry: str = "offaxis"):
    """Start the simulated IOC and an embedded Tiled server; yield (beamline, RunEngine, client).

    The RunEngine has the TiledWriter subscribed. Everything is stopped on exit.
    """
    from bluesky import RunEngine

    from .devices import make_devices
    from .sim_iocs.process import IocProcess
    from .storage import TiledService, tiled_writer

    with IocProcess(data_dir=data_dir, geometry=geometry) as ioc:
        ioc.apply_client_env()
        beamline = make_devices(ioc.prefix).connect_all(timeout=30)
        with TiledService(data_dir) as tiled:
            client = tiled.client()
            with client.context:
                RE = RunEngine({}, context_managers=[])
                RE.subscribe(tiled_writer(client))
                yield beamline, RE, client


def raster_demo(data_dir: Path, quick: bool = False, out: TextIO = sys.stdout) -> RasterDemoResult:
    """Run the seed-000 raster (or a 7 x 9 quick one) and store it in Tiled."""
    from .plans import nanodiffraction_raster
    from .storage import read_stream_array

    ny, nx = QUICK_RASTER if quick else (35, 51)
    with simulated_beamline(data_dir) as (beamline, RE, client):
        print(f"Raster {ny} x {nx} points, 0.4 µm steps, data in {data_dir}", file=out)
        t0 = time.perf_counter()
        (uid,) = RE(nanodiffraction_raster(beamline.detector, beamline.stage, ny=ny, nx=nx))
        seconds = time.perf_counter() - t0
        run = client[uid]
        if run.metadata["stop"]["exit_status"] != "success":
            raise RuntimeError(f"The raster ended with status {run.metadata['stop']['exit_status']}.")
        n_events = run.metadata["stop"]["num_events"].get("primary", 0)
        key = beamline.detector.image_key
        first = read_stream_array(client, uid, key)[[0, -1]] if n_events else None
        figures = _raster_figures(data_dir, uid, first)
    print(f"Stored {n_events} frames of {ny * nx} points in {seconds:.1f} s "
          f"({1000 * seconds / max(n_events, 1):.1f} ms per point).", file=out)
    for path in figures:
        print(f"figure: {path}", file=out)
    print(f"uid: {uid}", file=out)
    return RasterDemoResult(uid, n_events, seconds, figures)


def _raster_figures(data_dir: Path, uid: str, frames) -> list[Path]:
    """First and last frame of the raster, read back from Tiled, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if frames is None:
        return []
    figdir = Path(data_dir) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), constrained_layout=True)
    for ax, frame, title in zip(axes, frames, ("first point", "last point")):
        shown = np.where(frame == np.iinfo(np.uint32).max, np.nan, frame.astype(float))
        ax.imshow(np.log1p(shown), origin="lower", cmap="magma")
        ax.set_title(f"{title} (log counts)")
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    path = figdir / f"{uid[:8]}_raster_frames.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]
