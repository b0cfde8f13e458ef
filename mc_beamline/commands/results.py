"""The ``mc-beamline results`` and ``replay`` commands: a stored run's analysis as RESULT.json.

``results UID`` exports what the live analysis computed during run UID, as stored in Tiled;
``replay UID`` runs the stored run through the same live analysis again. Both write the
JSON of the matching offline command (xcca, msc or saxs; see docs/results.md) and agree
exactly (:mod:`mc_beamline.callbacks.replay`).
"""

from __future__ import annotations

from typing import Any, Callable

from mc_beamline.commands.catalog import open_catalog
from mc_beamline.io.inputs import check_output
from mc_beamline.io.result_json import write_json


def _export(args, compute: Callable[[Any, str], dict]) -> None:
    out = check_output(args.out, "--out")
    with open_catalog(args.data_dir, args.tiled) as client:
        result = compute(client, args.uid)
    write_json(result, out)
    print(f"{args.command} of run {args.uid}: {out}")


def run_results(args) -> None:
    """What ``mc-beamline results`` runs."""
    from mc_beamline.callbacks.replay import stored_results

    _export(args, stored_results)


def run_replay(args) -> None:
    """What ``mc-beamline replay`` runs."""
    from mc_beamline.callbacks.replay import replay

    _export(args, replay)


__all__ = ["run_replay", "run_results"]
