"""`mc-beamline xcca` as a user runs it: simulated raster in a Bitshuffle/LZ4 HDF5 file,
the real command in a subprocess, RESULT.json checked against the docs/results.md contract;
bad input ends with one line on stderr, a non-zero exit and no RESULT.json.

What a beamtime brings back gives the same RESULT.json as the HDF5 stack of the same
frames (the command's entry point run in this process, to share its start-up): an Eiger
master with linked data files (its pixel mask applied, its header geometry used without
--poni) and a Pilatus-style CBF series with an EDF mask."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from mc_beamline.cli import main
from mc_beamline.physics.mesocrystal import MesocrystalSimulator, seed_raster_positions
from tests.io.detector_files import nxmx_header, write_eiger, write_series

N = 12  # raster points per side of the test region (0.4 µm steps)
DATASET = "/entry/data/data"


def run_xcca(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    return subprocess.run([sys.executable, "-m", "mc_beamline.cli", "xcca", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def write_frames(path: Path, frames: np.ndarray | list, dtype="<u4", compress: bool = True) -> Path:
    """Frames into ``DATASET``, one chunk per frame (Eiger-style Bitshuffle/LZ4 if ``compress``)."""
    frames = list(frames) if not isinstance(frames, np.ndarray) else frames
    shape = np.shape(frames[0])
    filters = hdf5plugin.Bitshuffle(nelems=0, cname="lz4") if compress else {}
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATASET, shape=(len(frames), *shape), chunks=(1, *shape), dtype=dtype, **filters)
        for i, frame in enumerate(frames):
            ds[i] = frame
    return path


@pytest.fixture(scope="module")
def sim() -> MesocrystalSimulator:
    return MesocrystalSimulator()


@pytest.fixture(scope="module")
def raster(sim, tmp_path_factory):
    """An N x N part of the seed raster with the most [110]-zone positions (atomic peaks),
    written as a Bitshuffle/LZ4 file, with its PONI and mask."""
    ys, xs = seed_raster_positions()
    zone = np.array([[sim.truth_at(x, y).zone for x in xs] for y in ys])
    counts = {(r, c): int(zone[r : r + N, c : c + N].sum())
              for r in range(len(ys) - N + 1) for c in range(len(xs) - N + 1)}
    r0, c0 = max(counts, key=counts.get)
    assert counts[r0, c0] >= N * N // 3, "the simulated sample has too few zone grains for this test"
    positions = [(x, y) for y in ys[r0 : r0 + N] for x in xs[c0 : c0 + N]]
    d = tmp_path_factory.mktemp("xcca")
    frames = (sim.frame(x, y, noise_key=i) for i, (x, y) in enumerate(positions))
    write_frames(d / "frames.h5", list(frames))
    sim.geometry.write_poni(d / "geometry.poni")
    np.save(d / "mask.npy", sim.mask.astype(np.uint8))
    return {"dir": d, "h5": d / "frames.h5", "poni": d / "geometry.poni", "mask": d / "mask.npy",
            "truth": [sim.truth_at(x, y) for x, y in positions]}


def _is_angle(v) -> bool:
    return isinstance(v, float) and -180.0 < v <= 180.0


def test_raster_gives_the_result_of_the_contract(raster, tmp_path):
    out, plots = tmp_path / "RESULT.json", tmp_path / "plots"
    proc = run_xcca(raster["h5"], "--poni", raster["poni"], "--mask", raster["mask"], "--q-sl", "1.72",
                    "--q-al", "18.3", "--scan-shape", f"{N}x{N}", "--step-um", "0.4", "--out", out,
                    "--plot", plots)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"result: {out}" in proc.stdout
    res = json.loads(out.read_text())
    assert sorted(os.listdir(tmp_path)) == ["RESULT.json", "plots"]  # no temporary file left

    # keys and types exactly as docs/results.md
    assert set(res) == {"n_frames", "n_selected", "ccf", "ccf_peaks_deg", "superlattice",
                        "orientational_disorder_fwhm_deg", "orientational_disorder_fwhm_deg_err",
                        "misorientation_deg", "domains", "frames", "corrections"}
    assert res["corrections"] == {"solid_angle": True, "polarization_factor": None,
                                  "hot_pixels": {"count": 0, "pixels": []}}
    assert type(res["n_frames"]) is int and res["n_frames"] == N * N
    assert type(res["n_selected"]) is int and 0 < res["n_selected"] <= N * N
    assert set(res["ccf"]) == {"delta_deg", "value"}
    delta, value = res["ccf"]["delta_deg"], res["ccf"]["value"]
    assert len(delta) == len(value) > 0 and all(_is_angle(v) for v in delta)
    assert all(v is None or isinstance(v, float) for v in value)
    assert all(_is_angle(v) for v in res["ccf_peaks_deg"])
    assert set(res["superlattice"]) == {"lattice", "c_over_a", "c_over_a_err", "beta_deg"}
    # standard errors: positive and small beside their values
    assert 0 < res["superlattice"]["c_over_a_err"] < 0.1 * res["superlattice"]["c_over_a"]
    assert 0 < res["orientational_disorder_fwhm_deg_err"] < 0.5 * res["orientational_disorder_fwhm_deg"]
    assert res["superlattice"]["lattice"] in ("bct", "bcc")
    assert isinstance(res["superlattice"]["beta_deg"], float)
    assert isinstance(res["orientational_disorder_fwhm_deg"], float)
    mis = res["misorientation_deg"]
    assert set(mis) == {"mean", "mean_err", "std", "n"} and type(mis["n"]) is int
    assert isinstance(mis["mean"], float) and isinstance(mis["std"], float)
    assert mis["mean_err"] == pytest.approx(mis["std"] / mis["n"] ** 0.5)
    assert set(res["domains"]) == {"count", "mean_area_um2"} and type(res["domains"]["count"]) is int
    assert isinstance(res["domains"]["mean_area_um2"], float)
    frames = res["frames"]
    assert [f["index"] for f in frames] == list(range(N * N))
    for f in frames:
        assert set(f) == {"index", "selected", "sl_peaks_deg", "al_peaks_deg", "psi_deg", "domain"}
        assert type(f["selected"]) is bool
        assert all(_is_angle(v) for v in f["sl_peaks_deg"] + f["al_peaks_deg"])
        assert f["psi_deg"] is None or isinstance(f["psi_deg"], float)
        assert f["domain"] is None or type(f["domain"]) is int
    assert sum(f["selected"] for f in frames) == res["n_selected"]

    # science: zone positions show both rings, the bct superlattice and the disorder come out
    zone = [f for f, t in zip(frames, raster["truth"]) if t.zone]
    assert all(f["al_peaks_deg"] and f["sl_peaks_deg"] for f in zone)
    assert res["n_selected"] >= 0.8 * len(zone)
    assert res["superlattice"]["lattice"] == "bct"
    assert math.isfinite(res["superlattice"]["c_over_a"])
    assert res["superlattice"]["c_over_a"] == pytest.approx(1.22, abs=0.03)
    assert len(res["ccf_peaks_deg"]) == 8
    assert 5.0 < res["orientational_disorder_fwhm_deg"] < 15.0
    assert abs(mis["mean"]) < 8.0 and mis["n"] > 0

    pngs = list(plots.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pngs[0].stat().st_size > 10_000


def test_nan_pixels_are_bad_pixels_and_a_2d_dataset_is_one_frame(sim, raster, tmp_path):
    ys, xs = seed_raster_positions()
    frame = sim.frame(xs[25], ys[17], noise_key=3).astype(np.float32)
    frame[frame >= 2**32 - 1] = np.nan  # gaps as NaN, as after a float conversion
    frame[200:260, 300:700] = np.nan
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=frame, **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    out = tmp_path / "RESULT.json"
    proc = run_xcca(path, "--poni", raster["poni"], "--mask", raster["mask"], "--q-sl", "1.72", "--q-al", "18.3",
                    "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["n_frames"] == 1 and len(res["frames"]) == 1
    assert res["frames"][0]["sl_peaks_deg"]


def test_correction_options_reach_the_analysis_and_the_result(raster, tmp_path):
    out = tmp_path / "RESULT.json"
    proc = run_xcca(raster["h5"], "--poni", raster["poni"], "--mask", raster["mask"], "--q-sl", "1.72",
                    "--q-al", "18.3", "--out", out, "--no-progress", "--no-solid-angle", "--polarization", "0.99",
                    "--hot-pixel-frames", "0")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["corrections"] == {"solid_angle": False, "polarization_factor": 0.99, "hot_pixels": None}
    assert res["n_frames"] == N * N and res["superlattice"]["lattice"] == "bct"


@pytest.fixture(scope="module")
def bad_files(sim, raster):
    d = raster["dir"] / "bad"
    d.mkdir()
    (d / "text.h5").write_text("not HDF5, just text\n")
    (d / "broken.poni").write_text("# pyFAI-like but broken\nDistance: not-a-number\nPoni1: 0.01\n")
    np.save(d / "small_mask.npy", np.zeros((100, 100), dtype=np.uint8))
    good = sim.frame(0.0, 0.0, noise_key=1).astype(np.float32)
    nan = np.full(sim.geometry.shape, np.nan, dtype=np.float32)
    write_frames(d / "nan.h5", [good, nan, good], dtype="<f4")
    write_frames(d / "small_frames.h5", np.zeros((2, 64, 64), dtype=np.uint16), dtype="<u2")
    with h5py.File(d / "flat.h5", "w") as f:
        f.create_dataset(DATASET, data=np.arange(10))
    write_eiger(d, "lost", np.zeros((4, 64, 64), dtype="<u4"), per_file=2)
    (d / "lost_data_000002.h5").unlink()
    return d


GOOD = {"h5": "{h5}", "poni": "{poni}", "mask": "{mask}", "q-sl": "1.72", "q-al": "18.3"}
BAD_INPUTS = {
    "missing file": ({"h5": "{bad}/missing.h5"}, "does not exist"),
    "not an HDF5 file": ({"h5": "{bad}/text.h5"}, "not an HDF5 file"),
    "wrong dataset path": ({"dataset": "/entry/data/nothing"}, "no dataset /entry/data/nothing"),
    "dataset is a group": ({"dataset": "/entry/data"}, "not a dataset"),
    "dataset not 3-D": ({"h5": "{bad}/flat.h5"}, "(n, rows, columns)"),
    "frame shape not the detector's": ({"h5": "{bad}/small_frames.h5"}, "64x64"),
    "mask of wrong shape": ({"mask": "{bad}/small_mask.npy"}, "shape (100, 100)"),
    "mask not .npy": ({"mask": "{bad}/text.h5"}, "Mask file"),
    "PONI does not parse": ({"poni": "{bad}/broken.poni"}, "does not parse"),
    "PONI missing": ({"poni": "{bad}/missing.poni"}, "does not exist"),
    "ring outside the detector": ({"q-al": "80"}, "not on the detector"),
    "negative q": ({"q-sl": "-1.72"}, "--q-sl"),
    "scan shape mismatch": ({"scan-shape": "11x12"}, "132 points"),
    "scan shape syntax": ({"scan-shape": "12by12"}, "NYxNX"),
    "step not positive": ({"step-um": "0"}, "--step-um"),
    "out directory missing": ({"out": "{tmp}/nowhere/RESULT.json"}, "does not exist"),
    "NaN frame": ({"h5": "{bad}/nan.h5"}, "Frame 1"),
    "Eiger data file missing": ({"h5": "{bad}/lost_master.h5"}, "lost_data_000002.h5 does not exist"),
    "no geometry": ({"poni": None}, "give --poni GEOM.poni"),
    "polarisation factor out of range": ({"polarization": "1.5"}, "--polarization"),
    "negative hot-pixel frames": ({"hot-pixel-frames": "-1"}, "--hot-pixel-frames"),
}


def _argv(case: dict, paths: dict) -> list[str]:
    opts = {**GOOD, "out": "{tmp}/RESULT.json", **case}
    argv = [opts.pop("h5").format(**paths)]
    for key, value in opts.items():
        if value is not None:  # None: the option is left out
            argv += [f"--{key}", value.format(**paths)]
    return argv


@pytest.mark.parametrize("case, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gives_one_sentence_and_no_result(case, message, raster, bad_files, tmp_path):
    paths = {"h5": raster["h5"], "poni": raster["poni"], "mask": raster["mask"], "bad": bad_files, "tmp": tmp_path}
    proc = run_xcca(*_argv(case, paths))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mc-beamline xcca: ") and lines[0].endswith(".")
    assert message in lines[0]
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no RESULT.json, no temporary file


def test_a_failed_run_leaves_an_existing_result_untouched(raster, bad_files, tmp_path):
    out = tmp_path / "RESULT.json"
    out.write_text('{"previous": true}\n')
    proc = run_xcca(bad_files / "nan.h5", "--poni", raster["poni"], "--q-sl", "1.72", "--q-al", "18.3",
                    "--out", out)
    assert proc.returncode == 2
    assert out.read_text() == '{"previous": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["RESULT.json"]


# ----------------------------------------------------------- files from a beamtime
N_BEAMTIME = 48  # the first four raster rows


def xcca_here(*args) -> dict | None:
    """``mc-beamline xcca ARGS --no-progress`` through the command's entry point in this
    process; the RESULT.json written, or None if the exit status is not 0."""
    out = Path(args[args.index("--out") + 1])
    if main(["xcca", *map(str, args), "--no-progress"]) != 0:
        return None
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def beamtime(raster):
    """The first rows of the raster as one HDF5 stack, and its RESULT.json with --poni and --mask."""
    d = raster["dir"] / "beamtime"
    d.mkdir()
    with h5py.File(raster["h5"], "r") as f:
        frames = f[DATASET][:N_BEAMTIME]
    write_frames(d / "stack.h5", frames)
    result = xcca_here(d / "stack.h5", "--poni", raster["poni"], "--mask", raster["mask"], "--q-sl", "1.72",
                       "--q-al", "18.3", "--out", d / "stack.json")
    assert result is not None and result["n_selected"] > 0  # the comparisons below compare a real CCF
    return {"dir": d, "frames": frames, "result": result}


def test_eiger_master_gives_the_result_of_the_single_file(sim, raster, beamtime, tmp_path, capsys):
    master = write_eiger(tmp_path, "scan", beamtime["frames"], per_file=16, header=nxmx_header(sim.geometry),
                         pixel_mask=np.zeros(sim.geometry.shape, np.uint32))
    common = ["--mask", raster["mask"], "--q-sl", "1.72", "--q-al", "18.3"]
    assert xcca_here(master, "--poni", raster["poni"], *common, "--out", tmp_path / "poni.json") == beamtime["result"]
    assert "header" not in capsys.readouterr().err

    # without --poni the master's NXmx header (written from the same geometry) gives it, and says so
    assert xcca_here(master, *common, "--out", tmp_path / "header.json") == beamtime["result"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mc-beamline xcca: no --poni, geometry from the header of {master}")
    assert "beam centre x = 130.50 px (column), y = 130.50 px (row), distance 164.00 mm" in err[0]


def test_master_pixel_mask_keeps_a_hot_pixel_out_of_the_ccf(sim, raster, beamtime, tmp_path):
    q = sim.geometry.q_map
    on_ring = np.abs(q - 1.72) + np.where(sim.mask, np.inf, 0.0)
    hot = np.unravel_index(int(np.argmin(on_ring)), q.shape)  # a good pixel on the SL ring
    frames = beamtime["frames"].copy()
    frames[:, hot[0], hot[1]] = 50_000
    hot_mask = np.zeros(sim.geometry.shape, np.uint32)
    hot_mask[hot] = 8  # the Eiger's "hot pixel" flag
    d = tmp_path
    (d / "masked").mkdir()
    (d / "unmasked").mkdir()
    common = ["--poni", raster["poni"], "--mask", raster["mask"], "--q-sl", "1.72", "--q-al", "18.3"]
    masked = xcca_here(write_eiger(d / "masked", "scan", frames, per_file=16, pixel_mask=hot_mask), *common,
                       "--out", d / "masked.json")
    unmasked = xcca_here(write_eiger(d / "unmasked", "scan", frames, per_file=16,
                                     pixel_mask=np.zeros_like(hot_mask)), *common, "--hot-pixel-frames", "0",
                         "--out", d / "unmasked.json")  # no hot-pixel search either
    # the same frames as one HDF5 stack, with the hot pixel in the --mask file
    np.save(d / "mask_and_hot.npy", (sim.mask | (hot_mask != 0)).astype(np.uint8))
    both = xcca_here(write_frames(d / "stack.h5", frames), "--poni", raster["poni"], "--mask", d / "mask_and_hot.npy",
                     "--q-sl", "1.72", "--q-al", "18.3", "--out", d / "stack.json")
    assert masked == both  # pixel_mask OR --mask, exactly as one mask file
    assert unmasked["ccf"]["value"] != masked["ccf"]["value"]  # unmasked, the hot pixel does reach the CCF


def test_cbf_series_with_edf_mask_analyses_like_the_hdf5_stack(sim, raster, beamtime, tmp_path):
    from fabio.edfimage import EdfImage

    # Pilatus-style: int32 counts, -1 in the gaps
    frames = beamtime["frames"].astype(np.int64)
    frames[frames == 2**32 - 1] = -1
    write_series(tmp_path / "scan", frames.astype(np.int32), "cbf")
    EdfImage(data=sim.mask.astype(np.int8)).write(str(tmp_path / "mask.edf"))  # as pyFAI-drawmask writes it
    result = xcca_here(tmp_path / "scan", "--poni", raster["poni"], "--mask", tmp_path / "mask.edf", "--q-sl",
                       "1.72", "--q-al", "18.3", "--out", tmp_path / "RESULT.json")
    assert result == beamtime["result"]
