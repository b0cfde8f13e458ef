"""The experiments this beamline runs, and what analyses each one's runs.

One table that the live session, ``results``, ``replay`` and ``reprocess`` all look up: an
experiment's raw runs carry ``mc_beamline.experiment`` in their start metadata; its live
analysis class turns their documents into a result; the derived run that stores the
result is named by ``mc_beamline.analysis`` and holds it under its stop-document key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from event_model import RunRouter

from mc_beamline.callbacks import assembly_results, flow_results, xcca_results
from mc_beamline.callbacks.live_assembly import LiveAssembly
from mc_beamline.callbacks.live_flow import LiveFlow
from mc_beamline.callbacks.live_xcca import LiveXcca
from mc_beamline.callbacks.queued_analysis import (
    Publisher,
    QueuedRunAnalysis,
    analysis_router,
)


@dataclass(frozen=True)
class Experiment:
    """One kind of experiment and its live analysis."""

    live: type[QueuedRunAnalysis]
    """The live analysis of its runs (``live.EXPERIMENT`` is the experiment's name)."""
    analysis_name: str
    """``mc_beamline.analysis`` of the derived runs holding its results."""
    result_key: str
    """Key of the result (the JSON of the matching offline command) in a derived run's stop document."""

    @property
    def name(self) -> str:
        return self.live.EXPERIMENT


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(LiveXcca, xcca_results.ANALYSIS_NAME, xcca_results.RESULT_KEY),
    Experiment(LiveFlow, flow_results.ANALYSIS_NAME, flow_results.RESULT_KEY),
    Experiment(LiveAssembly, assembly_results.ANALYSIS_NAME, assembly_results.RESULT_KEY),
)}
"""Every experiment with a live analysis, by name (raster, flow, assembly)."""


def experiment_of(start_doc: dict) -> Experiment | None:
    """The experiment of the run ``start_doc`` starts, or None if it has no live analysis."""
    return EXPERIMENTS.get(start_doc.get("mc_beamline", {}).get("experiment"))


def live_router(publish: Publisher | None = None, figure_dir: Path | None = None,
                on_run: Callable[[QueuedRunAnalysis], None] | None = None) -> RunRouter:
    """A RunRouter that analyses the runs of every experiment live (subscribe it to the RunEngine).

    Each run gets its experiment's analysis; ``publish`` receives the derived runs' documents
    and ``on_run`` each new analysis.
    """
    return analysis_router(*(e.live for e in EXPERIMENTS.values()), on_run=on_run, publish=publish,
                           figure_dir=figure_dir)


__all__ = ["EXPERIMENTS", "Experiment", "experiment_of", "live_router"]
