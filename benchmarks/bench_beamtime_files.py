"""``mc-beamline xcca`` on a beamtime-sized Eiger file, start-up included, against baselines.

Run: ``python benchmarks/bench_beamtime_files.py [--dir DIR] [--rounds 3] [--per-file 1000]
[--compare-tree SRC] [--pyfai-rounds N]``

Data (generated once into ``--dir``, default ``mc-bench-beamtime`` in the temporary
directory, and reused): the seed raster, 1785 simulated 1 Mpx frames (uint32, one frame per
chunk, Bitshuffle/LZ4, as ``bench_xcca_command.py`` writes them) in ``frames.h5``, and the
same frames as an Eiger-style master file: ``seed_master.h5`` whose ``/entry/data/data_000001``,
``data_000002``, ... are external links to ``/entry/data/data`` of ``seed_data_000001.h5``, ...
(``--per-file`` frames each; the chunks are copied, not recompressed).

Each round measures, one after the other (rounds interleave the methods, so that other work
on the machine disturbs all of them alike; the tables give the minimum over rounds):

* command         -- ``python -m mc_beamline.cli xcca frames.h5 ...``, wall time of the
                     process: interpreter start, imports, set-up, every frame, result, JSON;
* plain read      -- a single-threaded h5py loop over every frame in a fresh interpreter:
                     ``ds[i]`` (new array per frame) and ``ds.read_direct`` (one reused
                     buffer); the loop's time (file open and reads) is the baseline, the
                     process wall time is shown beside it;
* pyFAI pipeline  -- a fresh interpreter that does what one would write with pyFAI: load the
                     PONI (``pyFAI.load``) and mask, then per frame ``ds[i]``, ``integrate2d``
                     (360 azimuthal bins over the q range of both rings, CSR, pyFAI's default
                     OpenMP threads), the two ring profiles and the mask-corrected CCF with
                     numpy FFTs, averaged over frames; wall time of the process;
* first frame     -- a fresh interpreter running the command's own steps (the cli parser,
                     ``prepare_xcca``, ``iter_batches``): seconds from starting the process
                     until the first batch of frames is in memory and until its first frame
                     is analysed;
* master file     -- in this process, through ``seed_master.h5`` and its links: the plain
                     h5py loop (``ds[i]``) over every linked dataset, the command's frame
                     source for the master file (``open_frames``: raw chunks of every linked
                     file, decompressed in a thread pool), and the command's read loop
                     (``iter_batches`` + ``XccaAnalysis.add_frames``, no result) on it.

``--compare-tree SRC`` also runs the command and the first-frame measurement with the
package from another source tree (e.g. an export of an older commit), in the same rounds.
Once, ``python -X importtime -m mc_beamline.cli xcca ...`` gives the import time of the
command (sum of all modules' own times) and its largest top-level imports.

Every command run must give the same RESULT.json. The load average is printed with every
table (``os.getloadavg``: 1, 5, 15 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
"""The source tree this benchmark belongs to: the package it measures (children get it as
PYTHONPATH; the rows measured in this process put it first on sys.path)."""
DATASET = "/entry/data/data"
Q_SL, Q_AL = 1.72, 18.3
SCAN = "35x51"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


# ------------------------------------------------------------------------ test data
def ensure_data(directory: Path, per_file: int) -> tuple[Path, Path]:
    """frames.h5 (with geometry.poni, mask.npy) and seed_master.h5 with its data files."""
    directory.mkdir(parents=True, exist_ok=True)
    stack = directory / "frames.h5"
    if not stack.exists():
        sys.path.insert(0, str(HERE))
        from bench_xcca_command import generate

        generate(directory)
    master = directory / "seed_master.h5"
    if not master.exists():
        build_master(stack, directory, "seed", per_file)
    return stack, master


def build_master(stack: Path, directory: Path, name: str, per_file: int) -> Path:
    """An Eiger-style master file whose ``/entry/data/data_00000N`` link to data files."""
    links = []
    with h5py.File(stack, "r") as src:
        ds = src[DATASET]
        n, shape = ds.shape[0], ds.shape[1:]
        for k, i0 in enumerate(range(0, n, per_file), start=1):
            m = min(per_file, n - i0)
            data_name = f"{name}_data_{k:06d}.h5"
            with h5py.File(directory / data_name, "w") as f:
                out = f.create_dataset(DATASET, shape=(m, *shape), chunks=(1, *shape), dtype=ds.dtype,
                                       **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
                for j in range(m):
                    out.id.write_direct_chunk((j, 0, 0), ds.id.read_direct_chunk((i0 + j, 0, 0))[1], 0)
                out.attrs["image_nr_low"] = i0 + 1
                out.attrs["image_nr_high"] = i0 + m
            links.append((f"data_{k:06d}", data_name))
    path = directory / f"{name}_master.h5"
    with h5py.File(path, "w") as f:
        data = f.create_group("/entry/data")
        data.attrs["NX_class"] = "NXdata"
        for key, data_name in links:
            data[key] = h5py.ExternalLink(data_name, DATASET)
    print(f"# wrote {path.name} with {len(links)} linked data files of up to {per_file} frames", flush=True)
    return path


def linked_datasets(master: Path) -> list[str]:
    with h5py.File(master, "r") as f:
        return sorted(f"/entry/data/{k}" for k in f["/entry/data"] if k.startswith("data_"))


# ------------------------------------------------------- children (fresh interpreters)
def child_plain(path: str, mode: str) -> None:
    """Single-threaded h5py read of every frame; prints the loop's seconds."""
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        ds = f[DATASET]
        if mode == "getitem":
            for i in range(ds.shape[0]):
                ds[i]
        else:
            buf = np.empty(ds.shape[1:], dtype=ds.dtype)
            for i in range(ds.shape[0]):
                ds.read_direct(buf, np.s_[i], np.s_[...])
    print(json.dumps({"loop_s": time.perf_counter() - t0}))


def child_pyfai(path: str, poni: str, mask_path: str) -> None:
    """The pyFAI pipeline end to end: PONI, mask, per frame ds[i] + integrate2d + ring profiles
    + mask-corrected CCF (numpy FFT), averaged."""
    import pyFAI

    from mc_beamline.analysis.xcca.ccf import masked_ccf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ai = pyFAI.load(poni)
    mask = np.load(mask_path).astype(bool)
    hw_sl, hw_al = 0.035 * Q_SL, 0.03 * Q_AL  # the command's ring half widths
    q_range = (Q_SL - hw_sl - 0.03, Q_AL + hw_al + 0.03)
    npt_rad = int(round((q_range[1] - q_range[0]) / 0.03))
    total, count = np.zeros(360), np.zeros(360)
    with h5py.File(path, "r") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = f[DATASET]
        for i in range(ds.shape[0]):
            res = ai.integrate2d(ds[i], npt_rad, 360, unit="q_nm^-1", radial_range=q_range, mask=mask,
                                 method=("bbox", "csr", "cython"), correctSolidAngle=False)
            q = res.radial
            intensity = np.asarray(res.intensity, dtype=np.float64)
            n_px = np.asarray(res.count, dtype=np.float64)
            profiles, weights = [], []
            for q0, hw in ((Q_SL, hw_sl), (Q_AL, hw_al)):
                cols = np.abs(q - q0) <= hw
                c = n_px[:, cols]
                s = (intensity[:, cols] * c).sum(axis=1)
                n = c.sum(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    profiles.append(np.where(n > 0, s / n, np.nan))
                weights.append((n > 0).astype(np.float64))
            ccf = masked_ccf(profiles[0], weights[0], profiles[1], weights[1])
            ok = np.isfinite(ccf)
            total[ok] += ccf[ok]
            count[ok] += 1
    print(json.dumps({"frames": int(ds.shape[0]), "mean_ccf_max": float(np.nanmax(total / np.maximum(count, 1)))}))


def child_first_frame(argv: list[str]) -> None:
    """The command's own steps up to the first analysed frame; prints wall-clock times (time.time)."""
    from mc_beamline.cli import build_parser
    from mc_beamline.commands.xcca import iter_batches, prepare_xcca

    args = build_parser().parse_args(["xcca", *argv])
    job = prepare_xcca(args)
    t_setup = time.time()
    batches = iter_batches(job.frames, job.batch, dict(read_s=0.0, analysis_s=0.0, wait_s=0.0))
    try:
        start, frames = next(batches)
        t_read = time.time()
        job.analysis.add_frame(start, frames[0])
        t_analysed = time.time()
    finally:
        batches.close()
        job.close()
    import mc_beamline

    print(json.dumps({"setup": t_setup, "read": t_read, "analysed": t_analysed, "batch": int(frames.shape[0]),
                      "package": str(Path(mc_beamline.__file__).parent)}))


# ------------------------------------------------------------------ measurements
CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system, all threads) of each measured process, by row."""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(argv: list[str], env: dict | None = None, row: str | None = None) -> tuple[float, float, dict]:
    """(time.time() at start, wall seconds, the child's JSON line); its CPU seconds go to ``CPU[row]``."""
    cpu0 = children_cpu()
    started = time.time()
    t0 = time.perf_counter()
    # cwd: not a source tree, which ``python -m`` would put first on sys.path (before PYTHONPATH)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed:\n{proc.stderr}")
    if row is not None:
        CPU.setdefault(row, []).append(children_cpu() - cpu0)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return started, wall, (json.loads(lines[-1]) if lines else {})


def env_for(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env["PYTHONPATH"] = str(tree)
    return env


def command_argv(stack: Path, out: Path) -> list[str]:
    d = stack.parent
    return [str(stack), "--poni", str(d / "geometry.poni"), "--mask", str(d / "mask.npy"), "--q-sl", str(Q_SL),
            "--q-al", str(Q_AL), "--scan-shape", SCAN, "--step-um", "0.4", "--out", str(out), "--no-progress"]


def master_rows(master: Path) -> dict[str, float]:
    """Seconds through the master file: plain h5py over its links, the package's master-file
    frame source (``open_frames``), and the command's read loop + per-frame analysis on it."""
    from mc_beamline.commands.xcca import DEFAULT_BATCH_BYTES, MAX_BATCH_FRAMES, iter_batches
    from mc_beamline.io.frame_sources import open_frames

    names = linked_datasets(master)
    rows = {}
    c0, t0 = time.process_time(), time.perf_counter()
    n = 0
    with h5py.File(master, "r") as f:
        for name in names:
            ds = f[name]
            for i in range(ds.shape[0]):
                ds[i]
            n += ds.shape[0]
    rows["plain"] = time.perf_counter() - t0
    CPU.setdefault("master plain", []).append(time.process_time() - c0)

    source = open_frames(master)
    try:
        batch = max(1, min(MAX_BATCH_FRAMES, DEFAULT_BATCH_BYTES // source.frame_bytes))
        buf = np.empty((batch, *source.frame_shape), dtype=source.dtype)
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(0, source.n_frames, batch):
            source.read_into(i, min(i + batch, source.n_frames), buf)
        rows["source"] = time.perf_counter() - t0
        CPU.setdefault("master source", []).append(time.process_time() - c0)
        rows["analysis"] = analyse_source(source, master.parent, batch, iter_batches)
    finally:
        source.close()
    rows["n"] = n
    return rows


def analyse_source(source, directory: Path, batch: int, iter_batches) -> float:
    """Seconds of the command's read loop and per-frame analysis over ``source`` (compiled
    kernels loaded before the clock starts; geometry and mask from ``directory``)."""
    from mc_beamline.analysis.detector.masks import load_mask
    from mc_beamline.analysis.xcca.pipeline import XccaAnalysis
    from mc_beamline.instrument.geometry import DetectorGeometry

    d = directory
    geometry = DetectorGeometry.from_poni(d / "geometry.poni", shape=source.frame_shape)
    analysis = XccaAnalysis(geometry, load_mask(d / "mask.npy", geometry.shape), q_sl=Q_SL, q_al=Q_AL,
                            scan_shape=(35, 51), step_um=0.4)
    analysis.add_frame(0, np.zeros(geometry.shape, dtype=source.dtype))  # load the compiled kernels
    analysis.records.clear()
    c0, t0 = time.process_time(), time.perf_counter()
    for start, frames in iter_batches(source, batch):
        analysis.add_frames(range(start, start + frames.shape[0]), frames)
    seconds = time.perf_counter() - t0
    CPU.setdefault("master analysis", []).append(time.process_time() - c0)
    assert len(analysis.records) == source.n_frames
    return seconds


def import_profile(stack: Path, tmp: Path, env: dict) -> tuple[float, list[tuple[str, float]]]:
    """(sum of every module's own import time, the largest top-level imports) of one command run."""
    argv = [sys.executable, "-X", "importtime", "-m", "mc_beamline.cli", "xcca", *command_argv(stack, tmp / "imp.json")]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, cwd=tmp)
    total, top = 0, {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name_field = line[len("import time:"):].split("|")
        total += int(self_us)
        name = name_field.strip()
        if len(name_field) - len(name_field.lstrip(" ")) == 1:  # not indented: imported by the command itself
            top[name] = top.get(name, 0) + int(cumulative_us)
    largest = sorted(top.items(), key=lambda kv: -kv[1])[:6]
    return total / 1e6, [(k, v / 1e6) for k, v in largest]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "mc-bench-beamtime",
                        help="where the files are generated once and reused")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, minimum reported (default 3)")
    parser.add_argument("--per-file", type=int, default=1000, help="frames per linked data file (default 1000)")
    parser.add_argument("--compare-tree", type=Path, default=None,
                        help="also run the command from this source tree (PYTHONPATH), e.g. an older commit")
    parser.add_argument("--pyfai-rounds", type=int, default=None,
                        help="rounds that also run the pyFAI pipeline, the longest row (default: all; 0: none)")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        {"plain": lambda: child_plain(*rest), "pyfai": lambda: child_pyfai(*rest),
         "first": lambda: child_first_frame(rest)}[kind]()
        return
    sys.path.insert(0, str(TREE))

    if args.pyfai_rounds is None:
        args.pyfai_rounds = args.rounds
    stack, master = ensure_data(args.dir, args.per_file)
    with h5py.File(stack, "r") as f:
        n = f[DATASET].shape[0]
        shape = f[DATASET].shape[1:]
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    trees = {"this tree": TREE}
    if args.compare_tree is not None:
        trees[f"{args.compare_tree}"] = args.compare_tree.resolve()
    import pyFAI

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), "
          f"hdf5plugin {hdf5plugin.version}, pyFAI {pyFAI.version}; {n} frames {shape[0]}x{shape[1]}, "
          f"{stack.stat().st_size / n / 2**10:.0f} KiB/frame compressed; minimum over {args.rounds} rounds", flush=True)

    samples: dict[str, list[float]] = {}
    extra: dict[str, list[float]] = {}
    loads = [load()]
    results = {}
    packages: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_beamtime_") as tmp_name:
        tmp = Path(tmp_name)
        for r in range(args.rounds):
            for label, tree in (list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]):  # alternate the order
                out = tmp / f"result_{r}_{len(results)}.json"
                _, wall, _ = run_child([sys.executable, "-m", "mc_beamline.cli", "xcca", *command_argv(stack, out)],
                                       env_for(tree), row=f"command ({label})")
                samples.setdefault(f"command ({label})", []).append(wall)
                results[(label, r)] = out.read_text()
                started, _, t = run_child([*me, "first", *command_argv(stack, tmp / "first.json")], env_for(tree))
                packages[label] = t["package"]
                samples.setdefault(f"first batch in memory ({label})", []).append(t["read"] - started)
                samples.setdefault(f"first frame analysed ({label})", []).append(t["analysed"] - started)
            for mode in ("getitem", "read_direct"):
                _, wall, t = run_child([*me, "plain", str(stack), mode], env_for(TREE), row=f"plain read {mode} (loop)")
                samples.setdefault(f"plain read {mode} (loop)", []).append(t["loop_s"])
                extra.setdefault(f"plain read {mode} (loop)", []).append(wall)
            if r < args.pyfai_rounds:
                _, wall, _ = run_child([*me, "pyfai", str(stack), str(stack.parent / "geometry.poni"),
                                        str(stack.parent / "mask.npy")], env_for(TREE), row="pyFAI pipeline")
                samples.setdefault("pyFAI pipeline", []).append(wall)
            rows = master_rows(master)
            for key in ("plain", "source", "analysis"):
                samples.setdefault(f"master {key}", []).append(rows[key])
            loads.append(load())
            print(f"# round {r + 1} done, {loads[-1]}", flush=True)
        imp_total, imp_top = import_profile(stack, tmp, env_for(TREE))

    distinct = {v for v in results.values()}
    if len({json.dumps(json.loads(v), sort_keys=True) for v in distinct}) != 1:
        raise SystemExit("the command runs gave different RESULT.json")

    best = {k: min(v) for k, v in samples.items()}
    plain = min(best["plain read getitem (loop)"], best["plain read read_direct (loop)"])
    print("\n" + "; ".join(f"{label}: package {path}" for label, path in packages.items()))
    print(f"loads during the rounds: {'; '.join(loads)}")
    head = f"{'':46s} {'seconds':>8s} {'frames/s':>9s} {'vs plain':>9s} {'CPU s':>6s} {'median s':>9s}"
    print(head)
    print("-" * len(head))
    for key, sec in best.items():
        if key.startswith(("first", "master")):
            continue
        note = f"  (process {min(extra[key]):.2f} s)" if key in extra else ""
        print(f"{key:46s} {sec:8.2f} {n / sec:9.0f} {sec / plain:8.2f}x {min(CPU[key]):6.2f} "
              f"{float(np.median(samples[key])):9.2f}{note}")
    print("(seconds: minimum over rounds; CPU s: user + system of the process, all threads, minimum over rounds)")
    print(f"\nthrough {master.name} ({len(linked_datasets(master))} linked data files, {n} frames):")
    for key, text in (("master plain", "plain h5py ds[i] over the links"),
                      ("master source", "open_frames(master): the command's frame source"),
                      ("master analysis", "iter_batches + XccaAnalysis.add_frames")):
        print(f"  {text:46s} {best[key]:6.2f} s {n / best[key]:6.0f} frames/s  CPU {min(CPU[key]):5.2f} s")
    print("\ntime to the first frame (from starting the process):")
    for key, sec in best.items():
        if key.startswith("first"):
            print(f"  {key:50s} {sec:8.2f} s")
    plain_by_round = np.minimum(samples["plain read getitem (loop)"], samples["plain read read_direct (loop)"])
    for label in trees:
        cmd = best[f"command ({label})"]
        paired = np.array(samples[f"command ({label})"]) / plain_by_round
        text = (f"\ncommand ({label}): {cmd / plain:.2f}x the plain single-threaded read (minima; round by round "
                f"{', '.join(f'{x:.2f}' for x in paired)})")
        if "pyFAI pipeline" in best:
            by_round = np.array(samples["pyFAI pipeline"]) / np.array(samples[f"command ({label})"][: len(samples["pyFAI pipeline"])])
            text += (f"; {best['pyFAI pipeline'] / cmd:.1f}x faster than the pyFAI pipeline end to end (round by round "
                     f"{', '.join(f'{x:.1f}' for x in by_round)})")
        print(text)
    print(f"\nimports of the command (-X importtime, this tree): {imp_total:.2f} s in all; largest top-level: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in imp_top))


if __name__ == "__main__":
    main()
