"""Memory of the live XCCA analysis over a long stream of frames (bounded, not growing with the stream).

Run: ``python benchmarks/bench_live_memory.py [--frames 100000] [--distinct 300] [--every 5000]
[--backlog 200] [--json OUT.json] [--cache DIR]``

A synthetic raster run of ``--frames`` points (raster 316 columns wide, snake) is handed
document by document to one :class:`~mc_beamline.callbacks.live_xcca.LiveXcca`, exactly as
the RunEngine hands a scan to it: a Resource, then a Datum and an Event per point whose
``point_number`` cycles through a detector file of ``--distinct`` real simulator frames
(1065 x 1030 uint32, Bitshuffle/LZ4, the live path: HDF5 read + decompression + XCCA of
each frame; every frame is a fresh array read from the file). Documents are composed one
at a time (the producer holds none), and the producer waits while more than ``--backlog``
frames are queued, as a scan that the analysis keeps up with (the documents of a real scan
come at the detector's pace).

Reported: the resident set size (RSS, from /proc/self/status) every ``--every`` frames, the
peak (VmHWM) at the end including the cross-frame result at the stop document, the growth
per frame between the first sample and the last frame, and that growth extrapolated to 10^5
frames (also with the extra memory of the result at the stop, scaled in proportion to the
frames). What grows is what the analysis keeps per frame by design (its per-frame record:
peaks, the CCF of frames with peaks on both rings, the AL peak cut; the callback's per-frame
latency; the locator's datum table); frames themselves are never kept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live_xcca import DATASET, detector_file  # noqa: E402

WIDTH = 316
"""Raster columns: 316 x 317 = 100172 points hold 10^5 frames."""


def rss_bytes(field: str = "VmRSS") -> int:
    """Resident set size (``VmRSS``) or its peak (``VmHWM``) of this process, bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def stream(sim, path: Path, n_distinct: int, n_frames: int, every: int, backlog: int) -> dict:
    """Feed one run of ``n_frames`` points to a fresh LiveXcca; return RSS samples and timings."""
    from event_model import compose_run

    from mc_beamline.analysis.detector.masks import encode_mask
    from mc_beamline.callbacks.live_xcca import LiveXcca
    from mc_beamline.devices.detector import RESOURCE_SPEC

    ny = math.ceil(n_frames / WIDTH)
    md = {
        "plan_name": "nanodiffraction_raster",
        "mc_beamline": {
            "experiment": "raster", "scan_shape": [ny, WIDTH], "step_um": 0.4, "center_um": [0.0, 0.0],
            "snake": True, "exposure_s": 0.01, "image_key": "det_image",
            "detector_poni": sim.geometry.to_poni_text(), "detector_mask": encode_mask(sim.mask),
            "detector_shape": list(sim.geometry.shape),
        },
    }
    run = compose_run(metadata=md)
    resource = run.compose_resource(spec=RESOURCE_SPEC, root=str(path.parent), resource_path=path.name,
                                    resource_kwargs={"dataset": DATASET, "swmr": True})
    descriptor = run.compose_descriptor(
        name="primary",
        data_keys={
            "stage_x": {"source": "SIM:X", "dtype": "number", "shape": [], "units": "um"},
            "det_image": {"source": "SIM:DET", "dtype": "array", "dtype_numpy": "<u4",
                          "shape": list(sim.geometry.shape), "external": "FILESTORE:"},
        },
    )
    live = LiveXcca(run.start_doc, publish=None)
    live("descriptor", descriptor.descriptor_doc)
    live("resource", resource.resource_doc)
    samples = []
    t0 = time.perf_counter()
    for i in range(n_frames):
        while i - len(live.frame_latency_s) > backlog:
            time.sleep(0.002)
        datum = resource.compose_datum(datum_kwargs={"point_number": i % n_distinct})
        live("datum", datum)
        live("event", descriptor.compose_event(data={"stage_x": 0.4 * (i % WIDTH), "det_image": datum["datum_id"]},
                                               timestamps={"stage_x": 0.0, "det_image": 0.0}))
        if (i + 1) % every == 0:
            samples.append({"frames": i + 1, "rss": rss_bytes(), "s": time.perf_counter() - t0})
    while len(live.frame_latency_s) < n_frames and not live.errors:
        time.sleep(0.01)
    frames_s = time.perf_counter() - t0
    last = {"frames": n_frames, "rss": rss_bytes(), "s": frames_s}
    live("stop", run.compose_stop(exit_status="success"))
    if not live.wait(1800):
        raise TimeoutError("the live analysis did not finish within 1800 s")
    if live.errors:
        raise RuntimeError(f"analysis errors: {live.errors[0]['message']}")
    peak = rss_bytes("VmHWM")
    first = samples[0] if samples else last
    per_frame = (last["rss"] - first["rss"]) / max(1, last["frames"] - first["frames"])
    return {
        "frames": n_frames, "distinct": n_distinct, "samples": samples, "last": last,
        "peak_rss": peak, "growth_per_frame": per_frame,
        "extrapolated_1e5": first["rss"] + per_frame * (100_000 - first["frames"]),
        "extrapolated_peak_1e5": first["rss"] + per_frame * (100_000 - first["frames"])
        + (peak - last["rss"]) * 100_000 / n_frames,
        "frames_per_s": n_frames / frames_s, "result_s": time.perf_counter() - t0 - frames_s,
        "n_selected": live.result["n_selected"], "records": len(live.analysis.records),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000, help="frames in the stream (default 100000)")
    parser.add_argument("--distinct", type=int, default=300, help="distinct frames in the detector file (default 300)")
    parser.add_argument("--every", type=int, default=5000, help="RSS sample every N frames (default 5000)")
    parser.add_argument("--backlog", type=int, default=200, help="most frames queued before the producer waits")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mc-bench-live-xcca",
                        help="directory of the generated detector file (reused when present)")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.every < 1:
        parser.error("--frames and --every must be positive")
    sim, path = detector_file(args.cache / f"frames_{args.distinct}.h5", args.distinct)
    out = stream(sim, path, args.distinct, args.frames, args.every, args.backlog)
    out["load_before"] = os.getloadavg()
    mib = 2**20
    print(f"LiveXcca memory over {args.frames} frames: {platform.node()}, {os.cpu_count()} CPUs, "
          f"load {out['load_before'][0]:.1f}, {args.distinct} distinct 1 Mpx frames")
    print(f"{'frames':>8} {'RSS MiB':>8} {'s':>7}")
    for s in out["samples"] + [out["last"]]:
        print(f"{s['frames']:>8} {s['rss'] / mib:>8.1f} {s['s']:>7.1f}")
    print(f"peak RSS (incl. the result at the stop): {out['peak_rss'] / mib:.1f} MiB; "
          f"growth {out['growth_per_frame']:.0f} B/frame -> {out['extrapolated_1e5'] / mib:.0f} MiB at 10^5 frames, "
          f"peak with the result {out['extrapolated_peak_1e5'] / mib:.0f} MiB; "
          f"{out['frames_per_s']:.0f} frames/s; result {out['result_s']:.1f} s; {out['n_selected']} selected")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
