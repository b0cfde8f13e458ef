"""One bluesky-adaptive ``optimize_in_run`` run carrying the plan's own start metadata.

``optimize_in_run`` opens its run with the engine's metadata (``plan_name``
``"optimize_in_run"``, iterations, optimization stream). The adaptive plans need their own
start metadata (plan name, experiment, what the live analysis needs to re-derive the
decisions) on that run; :func:`optimize_in_one_run` merges it into the open_run message
and keeps the engine's plan name as ``adaptive_engine``.
"""

from __future__ import annotations

import bluesky.preprocessors as bpp
from bluesky_adaptive.plans import optimize_in_run
from bluesky_adaptive.protocols import OptimizationProblem


def optimize_in_one_run(problem: OptimizationProblem, iterations: int, plan_md: dict):
    """``optimize_in_run(problem, iterations)`` whose start document also holds ``plan_md``."""

    def with_run_metadata(msg):
        if msg.command == "open_run":
            return msg._replace(kwargs={**msg.kwargs, **plan_md, "adaptive_engine": msg.kwargs.get("plan_name")})
        return msg

    return (yield from bpp.msg_mutator(optimize_in_run(problem, iterations=iterations), with_run_metadata))


__all__ = ["optimize_in_one_run"]
