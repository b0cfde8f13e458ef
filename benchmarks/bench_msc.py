"""CPU time per spectrum of the UV-Vis MSC/NC analysis: this checkout against a baseline revision.

Run: ``python benchmarks/bench_msc.py [--baseline REV] [--rounds 3] [--reactor-every 4]``

The same spectra go through ``analyse_spectrum`` of this checkout and of the package as it
is at ``--baseline`` (a git revision, default ``main``; its ``mc_beamline`` is extracted
with ``git archive`` into a temporary directory). The spectra (300–700 nm, 0.5 nm, the
flow cell's photon noise) are generated once, by this checkout: every ``--reactor-every``-th
condition of the reactor acceptance test (nucleation 190–350 °C, growth 0/40/90 °C below,
1.5–14 s), the 120 random mixtures of the mixture test and the 32 spectra of the
second-band-model test. Each version runs in its own process with one BLAS thread; the
two alternate for ``--rounds`` rounds, and the table gives the minimum process CPU time per
spectrum over rounds, per set and over all, and the ratio of this checkout to the baseline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
import numpy as np
from mc_beamline.analysis.uvvis.spectrum import analyse_spectrum
data = np.load(sys.argv[1])
lam = data["wavelength_nm"]
out = {}
for name in data.files:
    if name == "wavelength_nm":
        continue
    spectra = data[name]
    analyse_spectrum(lam, spectra[0])  # imports and first-call costs outside the clock
    t0 = time.process_time()
    for a in spectra:
        analyse_spectrum(lam, a)
    out[name] = (time.process_time() - t0) / len(spectra)
print(json.dumps(out))
"""


def make_spectra(reactor_every: int) -> dict[str, "np.ndarray"]:
    """The benchmark's spectra by set name (rows), with ``wavelength_nm``."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from mc_beamline.physics.absorption import absorbance, noisy_absorbance
    from mc_beamline.physics.flow_reactor import simulate
    from tests.analysis.uvvis.alt_band_model import validation_spectra
    from tests.analysis.uvvis.spectrum_sets import random_mixtures, reactor_conditions

    lam = np.arange(300.0, 700.01, 0.5)
    reactor = [noisy_absorbance(absorbance(simulate(c).population, lam), i)
               for i, c in enumerate(reactor_conditions()) if i % reactor_every == 0]
    mixtures = [noisy_absorbance(absorbance(pop, lam), 1000 + trial) for trial, pop in enumerate(random_mixtures())]
    alt = [a for _, _, a in validation_spectra(lam)]
    return {"wavelength_nm": lam, "reactor": np.array(reactor), "mixtures": np.array(mixtures),
            "alt_band_model": np.array(alt)}


def run_child(package_root: Path, spectra_file: Path) -> dict[str, float]:
    import json

    env = dict(os.environ, PYTHONPATH=str(package_root))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(spectra_file)], env=env, cwd=package_root,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare with (default main)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reactor-every", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "mc_beamline"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        spectra = make_spectra(args.reactor_every)
        spectra_file = Path(tmp) / "spectra.npz"
        np.savez(spectra_file, **spectra)
        counts = {k: len(v) for k, v in spectra.items() if k != "wavelength_nm"}
        best: dict[str, dict[str, float]] = {"baseline": {}, "this": {}}
        for _ in range(args.rounds):
            for version, root in (("baseline", base), ("this", REPO)):
                for name, t in run_child(root, spectra_file).items():
                    best[version][name] = min(t, best[version].get(name, float("inf")))
    total = sum(counts.values())
    for version in best:
        best[version]["all"] = sum(best[version][k] * n for k, n in counts.items()) / total
    counts["all"] = total
    print(f"load average {os.getloadavg()[0]:.2f}; baseline {args.baseline}; {args.rounds} rounds; CPU ms per spectrum")
    print(f"{'set':<16}{'spectra':>8}{'baseline':>10}{'this':>10}{'ratio':>8}")
    for name, n in counts.items():
        b, t = best["baseline"][name], best["this"][name]
        print(f"{name:<16}{n:>8}{1e3 * b:>10.1f}{1e3 * t:>10.1f}{t / b:>8.2f}")


if __name__ == "__main__":
    main()
