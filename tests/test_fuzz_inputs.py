"""Fuzzed input for the offline commands: never a traceback, never more than a memory bound.

Each command gets a valid file and random mutations of it (truncations, encodings,
delimiters, decimal commas, the other q unit, stray lines, sizes, garbage bytes). All
cases of one command run in one subprocess whose address space is capped
(:data:`ADDRESS_SPACE_LIMIT`, RLIMIT_AS), through the command's entry point: a case ends
with exit status 0 and a JSON result, or with status 2, one line on stderr and no result.
The number of cases run is printed (``-s``) and checked.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

ADDRESS_SPACE_LIMIT = 6 * 2**30
"""Bytes of address space a command may map (numba/LLVM and the BLAS threads reserve a lot)."""
MAX_RSS_BYTES = 2 * 2**30
"""Largest resident memory one run of all cases of a command may reach."""
SEED = 17

DRIVER = textwrap.dedent("""
    import contextlib, io, json, resource, sys, traceback
    from mc_beamline.cli import main
    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = main(argv)
            except BaseException:
                rc, err = -1, io.StringIO(traceback.format_exc())
        results.append({"argv": argv, "rc": rc, "stderr": err.getvalue()})
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"results": results, "peak_rss_bytes": peak_kib * 1024}))
""")


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def run_cases(cases: list[list[str]], timeout: float) -> tuple[list[dict], int]:
    """Run the command lines in one capped subprocess; (one result per case, its peak RSS in bytes).

    The subprocess reports its own peak: the RUSAGE_CHILDREN maximum of this process would
    be that of the largest child any earlier test started.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=_limit_memory)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["results"], report["peak_rss_bytes"]


def check(results: list[dict], out_of) -> None:
    for case in results:
        where = f"{case['argv']}: {case['stderr'][-2000:]}"
        assert case["rc"] in (0, 2), where
        assert "Traceback" not in case["stderr"] and "unexpected" not in case["stderr"], where
        out = Path(out_of(case["argv"]))
        if case["rc"] == 0:
            json.loads(out.read_text())
        else:
            assert len(case["stderr"].strip().splitlines()) == 1, where
            assert not out.exists(), where


# ----------------------------------------------------------------------------- mutations
def _mutations(text: str, rng: np.random.Generator, n: int) -> list[bytes]:
    """``n`` random variants of a text table."""
    lines = text.splitlines()
    variants = []
    for _ in range(n):
        kind = rng.integers(0, 9)
        if kind == 0:  # truncated anywhere, even mid-number or mid-character
            data = text.encode()[: int(rng.integers(0, len(text)))]
        elif kind == 1:  # other encodings
            data = ("# °, µm, Å\n" + text).encode(str(rng.choice(["utf-16", "latin-1", "utf-8-sig", "cp1252"])))
        elif kind == 2:  # other delimiters
            data = text.replace(",", str(rng.choice(["\t", ";", " ", " , ", "|"]))).encode()
        elif kind == 3:  # decimal commas with semicolons
            data = text.replace(",", ";").replace(".", ",").encode()
        elif kind == 4:  # a stray line somewhere
            k = int(rng.integers(1, len(lines)))
            data = "\n".join(lines[:k] + [str(rng.choice(["oops", "1 2 3 4 5", "nan nan", ""]))] + lines[k:]).encode()
        elif kind == 5:  # scaled first column (the other unit)
            factor = float(rng.choice([0.1, 10.0, 1e-3]))
            data = "\n".join(_scale_first(line, factor) for line in lines).encode()
        elif kind == 6:  # garbage bytes
            data = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
        elif kind == 7:  # lines dropped or repeated
            keep = rng.random(len(lines)) > 0.5
            data = "\n".join(line for line, k in zip(lines, keep) if k or line is lines[0]).encode()
        else:  # values replaced by specials
            data = "\n".join(line if rng.random() > 0.1 else line.replace("1", str(rng.choice(["inf", "-", "e"])))
                             for line in lines).encode()
        variants.append(data)
    return variants


def _scale_first(line: str, factor: float) -> str:
    head, sep, rest = line.partition(",")
    try:
        return f"{float(head) * factor:.6g}{sep}{rest}"
    except ValueError:
        return line


def saxs_curve_text(rng: np.random.Generator, n: int = 250) -> str:
    q = np.linspace(0.08, 3.0, n)
    i = 1e3 * np.exp(-(q * 4) ** 2 / 3) + 50 * np.exp(-((q - 1.2) / 0.02) ** 2) + 1 + rng.normal(0, 0.05, n)
    return "q,I\n" + "\n".join(f"{a:.6g},{b:.6g}" for a, b in zip(q, i))


def spectra_text(rng: np.random.Generator) -> str:
    lam = np.arange(300.0, 700.0, 2.0)
    a = 0.3 * np.exp(-((lam - 437) / 8) ** 2) + 0.05 + 1e-3 * rng.normal(size=lam.size)
    b = 0.2 * np.exp(-((lam - 520) / 15) ** 2) + 0.04
    return "wavelength_nm,A,B\n" + "\n".join(f"{x:g},{y:.5f},{z:.5f}" for x, y, z in zip(lam, a, b))


# ---------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("command", ["saxs", "msc"])
def test_fuzzed_tables_never_traceback_or_exceed_the_memory_bound(tmp_path, command):
    rng = np.random.default_rng(SEED)
    base = saxs_curve_text(rng) if command == "saxs" else spectra_text(rng)
    variants = _mutations(base, rng, 36)
    if command == "saxs":  # sizes: too few points, and a curve of 2·10⁵ points (refused, not analysed)
        variants += [base.encode()[:40], saxs_curve_text(rng, 200_000).encode()]
    else:
        wide = "wavelength_nm," + ",".join(f"S{k}" for k in range(20_000)) + "\n" + "300," + ",".join(["0.1"] * 20_000)
        variants += [wide.encode(), b"", b"\n\n\n"]
    cases = []
    for k, data in enumerate(variants):
        path = tmp_path / f"case{k:03d}.{'dat' if command == 'saxs' else 'csv'}"
        path.write_bytes(data)
        argv = [command, str(path), "--out", str(tmp_path / f"case{k:03d}.json")]
        if command == "saxs" and rng.random() < 0.3:
            argv[2:2] = ["--q-unit", "A^-1"]
        cases.append(argv)
    results, peak = run_cases(cases, timeout=600)
    check(results, lambda argv: argv[-1])
    refused = sum(r["rc"] == 2 for r in results)
    print(f"\n{command}: {len(results)} fuzz cases, {len(results) - refused} analysed, {refused} refused in one "
          f"sentence, peak RSS {peak / 2**20:.0f} MiB")
    assert len(results) == len(variants)
    assert peak < MAX_RSS_BYTES


def test_fuzzed_frame_files_never_traceback(tmp_path):
    rng = np.random.default_rng(SEED)
    frames = rng.integers(0, 100, (4, 64, 64), dtype=np.uint32)
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("/entry/data/data", data=frames, chunks=(1, 64, 64))
    blob = good.read_bytes()
    variants = [blob[: int(rng.integers(0, len(blob)))] for _ in range(8)]
    variants += [rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), b"", blob]
    poni = tmp_path / "g.poni"
    poni.write_text("Detector: Detector\nDetector_config: {\"pixel1\": 7.5e-5, \"pixel2\": 7.5e-5, "
                    "\"max_shape\": [64, 64]}\nDistance: 0.2\nPoni1: 0.0024\nPoni2: 0.0024\nRot1: 0\nRot2: 0\n"
                    "Rot3: 0\nWavelength: 1e-10\n")
    cases = []
    for k, data in enumerate(variants):
        path = tmp_path / f"case{k:02d}.h5"
        path.write_bytes(data)
        q_sl, q_al = (1.72, 18.3) if k % 3 else (1.72, 1.72)
        cases.append(["xcca", str(path), "--poni", str(poni), "--q-sl", str(q_sl), "--q-al", str(q_al),
                      "--no-progress", "--out", str(tmp_path / f"case{k:02d}.json")])
    results, peak = run_cases(cases, timeout=600)
    check(results, lambda argv: argv[-1])
    print(f"\nxcca: {len(results)} fuzz cases, peak RSS {peak / 2**20:.0f} MiB")
    assert len(results) == len(variants)
    assert peak < MAX_RSS_BYTES
