"""Per-frame cost of the XCCA engine against what a user would otherwise write.

Run: ``python benchmarks/bench_xcca.py [--frames 24] [--rounds 7] [--sizes 1M,4M] [--breakdown]``

For each detector size the same simulated mesocrystal frames (uint32, Eiger gap value in
the gaps) go through

* engine   -- :class:`mc_beamline.analysis.xcca.frame.XccaFrameEngine`: regroup the SL
              (1.72 ± 0.06 nm⁻¹) and AL (18.3 ± 0.55 nm⁻¹) rings into 360 azimuthal bins
              (8 radial slices each), mask-corrected CCF, smoothing and peaks on both
              rings; one frame per call, as a live callback runs it;
* batch    -- the same engine on stacks of 8 frames (``process_batch``), as replay and the
              offline command run it; time per frame;
* corrected -- the engine with the solid-angle and polarisation (factor 0.99) corrections
              folded in (one factor per ring segment), one frame per call;
* pyFAI    -- ``AzimuthalIntegrator.integrate2d`` (method bbox/csr/cython, 360 azimuthal
              bins, a q range covering both rings in bins of ~0.03 nm⁻¹) on the same mask,
              ring profiles averaged from the q bins of each ring, then the same
              mask-corrected CCF with numpy FFTs (no peak finding: that favours pyFAI);
* sum      -- ``frame.sum()``, one plain pass over the frame;
* gather   -- with ``--breakdown``: the engine's ring pixel gather alone
              (``operator.segment_sums``); the rest of the engine's time is everything after
              it (profiles, FFTs, CCF, smoothing, peaks, result objects).

Two ways of feeding frames: "stream" cycles through distinct frames (more than the CPU
caches hold, as a long scan brings them), "cached" repeats one frame (as right after a
detector or HDF5 decoder wrote it). Every method is timed in interleaved rounds and the
table gives the minimum over rounds of the per-frame time (the least disturbed by other
work on a shared machine) and the ratios from those minima. pyFAI's first call
(building its CSR matrix) is excluded; pyFAI runs with its default OpenMP threads, the
engine in one thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

from mc_beamline.analysis.detector.corrections import IntensityCorrections
from mc_beamline.analysis.xcca.ccf import masked_ccf
from mc_beamline.analysis.xcca.frame import RingSettings, XccaFrameEngine
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics.detector_model import (
    DEFAULT_ENERGY_KEV,
    beamstop_mask,
    gap_mask,
    offaxis_geometry,
)
from mc_beamline.physics.mesocrystal import MesocrystalSimulator, seed_raster_positions

Q_SL, HW_SL = 1.72, 0.06
Q_AL, HW_AL = 18.3, 0.55
N_BINS = 360


def geometry_for(size: str) -> DetectorGeometry:
    if size == "1M":
        return offaxis_geometry()  # 1065 x 1030
    if size == "4M":
        return DetectorGeometry.from_beam_center((2167, 2070), (130.0, 130.0), 0.164, DEFAULT_ENERGY_KEV)
    raise ValueError(f"Unknown size {size!r} (use 1M or 4M).")


class PyFAIBaseline:
    """integrate2d over the q range of both rings, then ring profiles and a numpy CCF."""

    def __init__(self, geometry: DetectorGeometry, mask: np.ndarray):
        self.ai = geometry.integrator()
        self.mask = mask
        self.q_range = (Q_SL - HW_SL - 0.03, Q_AL + HW_AL + 0.03)
        self.npt_rad = int(round((self.q_range[1] - self.q_range[0]) / 0.03))
        self.method = ("bbox", "csr", "cython")

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self.ai.integrate2d(
                frame,
                self.npt_rad,
                N_BINS,
                unit="q_nm^-1",
                radial_range=self.q_range,
                mask=self.mask,
                method=self.method,
                correctSolidAngle=False,
            )
        q = res.radial
        intensity = np.asarray(res.intensity, dtype=np.float64)  # (azimuth, q)
        count = np.asarray(res.count, dtype=np.float64) if res.count is not None else (intensity != 0)
        profiles, weights = [], []
        for q0, hw in ((Q_SL, HW_SL), (Q_AL, HW_AL)):
            cols = np.abs(q - q0) <= hw
            c = count[:, cols]
            s = (intensity[:, cols] * c).sum(axis=1)
            n = c.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                profiles.append(np.where(n > 0, s / n, np.nan))
            weights.append((n > 0).astype(np.float64))
        return masked_ccf(profiles[0], weights[0], profiles[1], weights[1])


def time_per_frame(fn, frames) -> float:
    t0 = time.perf_counter()
    for f in frames:
        fn(f)
    return (time.perf_counter() - t0) / len(frames)


def run(size: str, n_frames: int, rounds: int, mode: str, breakdown: bool = False) -> dict:
    geometry = geometry_for(size)
    sim = MesocrystalSimulator(geometry=geometry)
    mask = gap_mask(geometry.shape) | beamstop_mask(geometry)
    ys, xs = seed_raster_positions()
    frames = [sim.frame(xs[(7 * k) % xs.size], ys[(3 * k) % ys.size], noise_key=k) for k in range(n_frames)]
    rings = [RingSettings(Q_SL, HW_SL, 1.0, 7.0), RingSettings(Q_AL, HW_AL, 2.0, 7.0)]
    engine = XccaFrameEngine(geometry, rings, N_BINS, mask)
    norm = IntensityCorrections(solid_angle=True, polarization_factor=0.99).normalization(geometry)
    corrected = XccaFrameEngine(geometry, rings, N_BINS, mask, normalization=norm)
    baseline = PyFAIBaseline(geometry, mask)
    baseline(frames[0])  # build pyFAI's CSR matrix
    engine.process(frames[0])
    corrected.process(frames[0])
    if mode == "cached":
        frames = [frames[0]] * len(frames)
    stacks = [np.stack(frames[i : i + 8]) for i in range(0, len(frames) - 7, 8)]
    methods = {
        "engine": (engine.process, frames),
        "batch": (engine.process_batch, stacks),
        "corrected": (corrected.process, frames),
        "pyFAI": (baseline, frames),
        "sum": (lambda f: f.sum(), frames),
    }
    if breakdown:
        methods["gather"] = (lambda f: engine.operator.segment_sums(f.reshape(1, -1)), frames)
    samples: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(rounds):
        for name, (fn, items) in methods.items():
            per_item = time_per_frame(fn, items)
            samples[name].append(per_item / (8 if name == "batch" else 1))
    med = {k: min(v) for k, v in samples.items()}
    return {
        "size": size,
        "mode": mode,
        "shape": geometry.shape,
        "ring_pixels": engine.operator.n_pixels,
        "pyfai_bins": (N_BINS, baseline.npt_rad),
        **{f"{k}_ms": v * 1e3 for k, v in med.items()},
        "speedup_vs_pyfai": med["pyFAI"] / med["engine"],
        "engine_over_sum": med["engine"] / med["sum"],
        "batch_over_sum": med["batch"] / med["sum"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24, help="distinct frames per size, a multiple of 8 (default 24)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--sizes", default="1M,4M", help="comma-separated: 1M, 4M")
    parser.add_argument("--modes", default="stream,cached", help="comma-separated: stream, cached")
    parser.add_argument("--breakdown", action="store_true", help="also time the engine's ring gather alone")
    parser.add_argument(
        "--pyfai-threads", type=int, default=None, help="OpenMP threads for pyFAI (default: OpenMP's default)"
    )
    args = parser.parse_args()
    if args.pyfai_threads:
        os.environ["OMP_NUM_THREADS"] = str(args.pyfai_threads)  # before pyFAI's extensions load
    threads = os.environ.get("OMP_NUM_THREADS", f"default ({os.cpu_count()})")
    import pyFAI

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
        f"pyFAI {pyFAI.version} with {threads} OpenMP threads; times: minimum over {args.rounds} rounds"
    )
    rows = [
        run(s.strip(), args.frames, args.rounds, m.strip(), args.breakdown)
        for s in args.sizes.split(",")
        if s.strip()
        for m in args.modes.split(",")
        if m.strip()
    ]
    head = (
        f"{'size':>4} {'frames':>7} {'shape':>10} {'ring px':>8} {'engine ms':>10} {'batch ms':>9} {'corrected ms':>13} "
        f"{'pyFAI ms':>9} {'sum ms':>7} "
        f"{'pyFAI/engine':>13} {'engine/sum':>11} {'batch/sum':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        shape = f"{r['shape'][0]}x{r['shape'][1]}"
        print(
            f"{r['size']:>4} {r['mode']:>7} {shape:>10} {r['ring_pixels']:>8d} {r['engine_ms']:>10.3f} {r['batch_ms']:>9.3f} "
            f"{r['corrected_ms']:>13.3f} "
            f"{r['pyFAI_ms']:>9.2f} {r['sum_ms']:>7.3f} {r['speedup_vs_pyfai']:>12.1f}x {r['engine_over_sum']:>10.2f}x "
            f"{r['batch_over_sum']:>9.2f}x"
        )
    if args.breakdown:
        print(f"\n{'size':>4} {'frames':>7} {'engine ms':>10} {'gather ms':>10} {'after gather ms':>16}")
        for r in rows:
            print(
                f"{r['size']:>4} {r['mode']:>7} {r['engine_ms']:>10.3f} {r['gather_ms']:>10.3f} "
                f"{r['engine_ms'] - r['gather_ms']:>16.3f}"
            )


if __name__ == "__main__":
    main()
