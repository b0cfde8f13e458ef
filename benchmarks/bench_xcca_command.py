"""Throughput of ``mc-beamline xcca`` on the seed raster: 1785 frames of 1 Mpx, Bitshuffle/LZ4.

Run: ``python benchmarks/bench_xcca_command.py [--file FRAMES.h5] [--keep DIR] [--rounds 2]``

The seed raster (35 x 51 points, 0.4 µm steps, 10 ms frames) is generated once with the
mesocrystal simulator into an Eiger-style HDF5 file (uint32, one frame per chunk,
Bitshuffle/LZ4 via hdf5plugin; about 13 ms per frame to simulate). ``--file`` reuses such
a file (with ``geometry.poni`` and ``mask.npy`` beside it), ``--keep DIR`` writes it into
DIR instead of a temporary directory.

Rows of the table (per frame, minimum over ``--rounds`` passes over all frames):

* read, 1 frame/call    -- ``Dataset.read_direct`` of one frame (one chunk) into a buffer:
                           HDF5 chunk I/O + Bitshuffle/LZ4 decompression (hdf5plugin);
* read, B frames/call   -- the same for B frames per call (what the command does);
* raw chunk only        -- ``read_direct_chunk``: the compressed bytes, no decompression;
* raw + blosc2 decode   -- raw chunks decoded outside HDF5: each Bitshuffle/LZ4 chunk is
                           re-framed as a Blosc chunk (same per-block bit transposition and
                           LZ4 streams) and decoded by python-blosc2, in 1 and in N threads
                           (only if python-blosc2 is installed; checked bit-exact against h5py);
* analysis              -- ``XccaAnalysis.add_frames`` on batches already in memory, from
                           the command run without prefetch (read and analysis in turn);
* command, sequential   -- the command's streaming phase, read then analyse each batch;
* command, prefetch     -- the command as shipped: the next batch is read in a thread while
                           this one is analysed (its Bitshuffle/LZ4 frames decompressed by
                           FrameStack's thread pool, outside the GIL);
* command, CLI total    -- ``python -m mc_beamline.cli xcca`` wall time over all frames,
                           with interpreter start, PONI/mask/ring set-up, result and JSON.

Frames/s is 1 / (time per frame). The two command runs must give identical RESULT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import h5py
import hdf5plugin
import numpy as np

from mc_beamline.commands.xcca import run_xcca
from mc_beamline.physics.mesocrystal import (
    SEED_SCAN_SHAPE,
    SEED_STEP_UM,
    MesocrystalSimulator,
    seed_raster_positions,
)

DATASET = "/entry/data/data"


# ------------------------------------------------------------------------ test data
def generate(directory: Path) -> Path:
    """The seed raster, row-major, into ``directory/frames.h5`` (+ geometry.poni, mask.npy)."""
    sim = MesocrystalSimulator()
    ys, xs = seed_raster_positions()
    path = directory / "frames.h5"
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATASET, shape=(ys.size * xs.size, *sim.geometry.shape), chunks=(1, *sim.geometry.shape),
                              dtype="<u4", **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
        k = 0
        for y in ys:
            for x in xs:
                ds[k] = sim.frame(x, y, noise_key=k)
                k += 1
    sim.geometry.write_poni(directory / "geometry.poni")
    np.save(directory / "mask.npy", sim.mask.astype(np.uint8))
    dt = time.perf_counter() - t0
    print(f"# generated {k} frames in {dt:.0f} s ({dt / k * 1e3:.1f} ms/frame), "
          f"{path.stat().st_size / 2**20:.0f} MiB on disk", flush=True)
    return path


# ------------------------------------------------------------- Bitshuffle via Blosc
class BloscBitshuffleDecoder:
    """Decodes raw Bitshuffle/LZ4 HDF5 chunks (filter 32008) with python-blosc2.

    A Bitshuffle chunk is: total bytes (u64 BE), block bytes (u32 BE), then per block a
    u32 BE compressed size and an LZ4 block of the bit-transposed elements; the last
    partial block covers a multiple of 8 elements and the remaining < 8 elements follow
    raw. A Blosc-1 chunk with flags bitshuffle + "don't split" + LZ4 holds the same LZ4
    streams (u32 LE sizes) behind a 16-byte header and a table of block offsets.
    """

    def __init__(self, itemsize: int):
        import blosc2

        self.blosc2 = blosc2
        self.itemsize = itemsize

    def decode_into(self, chunk: bytes, out: np.ndarray) -> None:
        ts = self.itemsize
        total, block = struct.unpack_from(">QI", chunk, 0)
        nelem, belem = total // ts, block // ts
        nfull = nelem // belem
        last8 = (nelem - nfull * belem) // 8 * 8
        nblocks = nfull + (1 if last8 else 0)
        nbytes = (nfull * belem + last8) * ts
        head = 16 + 4 * nblocks
        starts = np.empty(nblocks, dtype=np.int64)
        pos = 12
        for b in range(nblocks):
            starts[b] = pos
            pos += 4 + struct.unpack_from(">I", chunk, pos)[0]
        frame = np.empty(head + pos - 12, dtype=np.uint8)
        frame[head:] = np.frombuffer(chunk, dtype=np.uint8, count=pos - 12, offset=12)
        offsets = (starts - 12 + head).astype("<i4")
        frame[16:head] = offsets.view(np.uint8)
        size_bytes = offsets[:, None].astype(np.int64) + np.arange(4)
        frame[size_bytes] = frame[size_bytes][:, ::-1]  # block sizes: big- to little-endian
        frame[:16] = np.frombuffer(struct.pack("<BBBBiii", 2, 1, 0x04 | 0x10 | (1 << 5), ts, nbytes, block,
                                               frame.size), dtype=np.uint8)
        flat = out.reshape(-1).view(np.uint8)
        self.blosc2.decompress(frame, dst=flat[:nbytes])
        flat[nbytes:] = np.frombuffer(chunk, dtype=np.uint8, offset=pos)


# ---------------------------------------------------------------------- measurements
def per_frame(fn, n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n


def read_rows(path: Path, batch: int, rounds: int, threads: int) -> list[tuple[str, float]]:
    rows = []
    with h5py.File(path, "r") as f:
        ds = f[DATASET]
        n, shape = ds.shape[0], ds.shape[1:]
        buf = np.empty((batch, *shape), dtype=ds.dtype)

        def read_one():
            for i in range(n):
                ds.read_direct(buf, np.s_[i : i + 1], np.s_[0:1])

        def read_batch():
            for i in range(0, n, batch):
                m = min(batch, n - i)
                ds.read_direct(buf, np.s_[i : i + m], np.s_[0:m])

        def raw():
            for i in range(n):
                ds.id.read_direct_chunk((i, 0, 0))

        rows.append(("read, 1 frame/call (h5py + hdf5plugin)", per_frame(read_one, n, rounds)))
        rows.append((f"read, {batch} frames/call (h5py + hdf5plugin)", per_frame(read_batch, n, rounds)))
        rows.append(("raw chunk only (read_direct_chunk)", per_frame(raw, n, rounds)))
        try:
            dec = BloscBitshuffleDecoder(ds.dtype.itemsize)
        except ImportError:
            print("# python-blosc2 not installed: no raw + blosc2 rows")
            return rows
        dec.decode_into(ds.id.read_direct_chunk((0, 0, 0))[1], buf[0])
        if not np.array_equal(buf[0], ds[0]):
            print("# blosc2 re-framing does not reproduce h5py's frame: no raw + blosc2 rows")
            return rows
        dec.blosc2.set_nthreads(1)

        def blosc_serial():
            for i in range(n):
                dec.decode_into(ds.id.read_direct_chunk((i, 0, 0))[1], buf[i % batch])

        rows.append(("raw + blosc2 decode, 1 thread", per_frame(blosc_serial, n, rounds)))
        if threads > 1:
            def blosc_pool():
                with ThreadPoolExecutor(threads) as pool:
                    for i0 in range(0, n, batch):
                        chunks = [ds.id.read_direct_chunk((i, 0, 0))[1] for i in range(i0, min(i0 + batch, n))]
                        list(pool.map(lambda k: dec.decode_into(chunks[k], buf[k]), range(len(chunks))))

            rows.append((f"raw + blosc2 decode, {threads} threads", per_frame(blosc_pool, n, rounds)))
    return rows


def command_args(path: Path, out: Path) -> SimpleNamespace:
    d = path.parent
    ny, nx = SEED_SCAN_SHAPE
    return SimpleNamespace(frames=path, poni=d / "geometry.poni", mask=d / "mask.npy", dataset=DATASET, q_sl=1.72,
                           q_al=18.3, scan_shape=f"{ny}x{nx}", step_um=SEED_STEP_UM, snake=False, out=out, plot=None,
                           no_progress=True)


def command_rows(path: Path, batch: int | None, rounds: int, tmp: Path) -> tuple[list, dict]:
    results, best = {}, {}
    sink = open(os.devnull, "w")
    for r in range(rounds):
        for prefetch in (False, True):
            timings: dict = {}
            out = tmp / f"result_{prefetch}.json"
            results[prefetch] = run_xcca(command_args(path, out), batch=batch, prefetch=prefetch, out=sink,
                                         timings=timings)
            key = "prefetch" if prefetch else "sequential"
            if key not in best or timings["stream_s"] < best[key]["stream_s"]:
                best[key] = timings
    sink.close()
    if json.dumps(results[False]) != json.dumps(results[True]):
        raise SystemExit("prefetch and sequential runs gave different results")
    n = results[True]["n_frames"]
    seq, pre = best["sequential"], best["prefetch"]
    rows = [
        ("analysis (add_frames, frames in memory)", seq["analysis_s"] / n),
        ("command streaming, sequential read+analysis", seq["stream_s"] / n),
        ("command streaming, prefetch thread (shipped)", pre["stream_s"] / n),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    a = command_args(path, tmp / "cli.json")
    argv = [sys.executable, "-m", "mc_beamline.cli", "xcca", str(a.frames), "--poni", str(a.poni), "--mask",
            str(a.mask), "--q-sl", "1.72", "--q-al", "18.3", "--scan-shape", a.scan_shape, "--step-um",
            str(a.step_um), "--out", str(a.out), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"the command failed: {proc.stderr}")
    if json.loads((tmp / "cli.json").read_text()) != json.loads(json.dumps(results[True])):
        raise SystemExit("the CLI run gave a different result")
    rows.append(("command, CLI total (start-up, set-up, result)", wall / n))
    return rows, {"n": n, "sequential": seq, "prefetch": pre, "cli_wall_s": wall, "result": results[True]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=None,
                        help="reuse this frames file (geometry.poni and mask.npy beside it)")
    parser.add_argument("--keep", type=Path, default=None, help="generate the file into this directory and keep it")
    parser.add_argument("--rounds", type=int, default=2, help="passes per measurement, minimum reported (default 2)")
    parser.add_argument("--batch", type=int, default=None, help="frames per batch (default: the command's, ~64 MiB)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for the blosc2 decode row")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_xcca_") as tmp_name:
        tmp = Path(tmp_name)
        if args.file is not None:
            path = args.file
        else:
            directory = args.keep or tmp
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "frames.h5"
            if not path.exists():
                path = generate(directory)
        with h5py.File(path, "r") as f:
            ds = f[DATASET]
            n, shape, dtype = ds.shape[0], ds.shape[1:], ds.dtype
        frame_mib = np.prod(shape) * dtype.itemsize / 2**20
        batch = args.batch or max(1, min(32, int(64 * 2**20 // (np.prod(shape) * dtype.itemsize))))
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
              f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), hdf5plugin {hdf5plugin.version}; "
              f"{n} frames {shape[0]}x{shape[1]} {dtype}, {path.stat().st_size / n / 2**10:.0f} KiB/frame compressed "
              f"({frame_mib:.1f} MiB raw); batch {batch}; minimum over {args.rounds} passes", flush=True)
        rows = read_rows(path, batch, args.rounds, args.threads)
        crows, info = command_rows(path, args.batch, args.rounds, tmp)
        rows += crows

    head = f"{'':48s} {'ms/frame':>9s} {'frames/s':>9s}"
    print(head)
    print("-" * len(head))
    for name, sec in rows:
        print(f"{name:48s} {sec * 1e3:9.3f} {1 / sec:9.0f}")
    seq, pre, n = info["sequential"], info["prefetch"], info["n"]
    print(f"\nsequential run: read+decompress {seq['read_s'] / n * 1e3:.2f} ms/frame, "
          f"analysis {seq['analysis_s'] / n * 1e3:.2f} ms/frame; read share {seq['read_s'] / seq['stream_s']:.0%}")
    print(f"prefetch run: waited for reads {pre['wait_s'] / n * 1e3:.2f} ms/frame; "
          f"speed-up of streaming {seq['stream_s'] / pre['stream_s']:.2f}x")
    print(f"fixed costs (prefetch run): set-up {pre['setup_s']:.2f} s, result {pre['result_s']:.2f} s, "
          f"JSON {pre['output_s']:.2f} s; CLI total {info['cli_wall_s']:.1f} s "
          f"= {n / info['cli_wall_s']:.0f} frames/s overall")
    r = info["result"]
    print(f"result: {r['n_selected']} selected, c/a {r['superlattice']['c_over_a']:.3f}, "
          f"disorder {r['orientational_disorder_fwhm_deg']:.1f} deg, domains {r['domains']['count']}")


if __name__ == "__main__":
    main()
