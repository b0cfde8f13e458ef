"""AssemblySeriesAnalysis on simulated series with known truth (seeds 003, 004, 001)."""

from __future__ import annotations

import numpy as np
import pytest

from mc_beamline.analysis.series.assembly_series import AssemblySeriesAnalysis
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics.assembly import AssemblyModel, default_q_nm
from mc_beamline.physics.superlattice_patterns import (
    HexToSquareTransition,
    dodecagonal_spots,
)


@pytest.fixture(scope="module")
def camera() -> DetectorGeometry:
    """A 256 x 256 SAXS camera, 172 µm pixels at 0.55 m, 12 keV: q up to 2.4 nm⁻¹ at the edges."""
    geometry = DetectorGeometry.from_beam_center((256, 256), (127.5, 127.5), 0.55, 12.0, pixel_m=172e-6)
    assert 2.3 < geometry.q_range()[1] < 3.5
    return geometry


def _powder_image(model: AssemblyModel, t: float, camera: DetectorGeometry, rng) -> np.ndarray:
    q = default_q_nm()
    return rng.poisson(np.interp(camera.q_map, q, model.curve(t, q)) * 50).astype(np.uint32)


@pytest.mark.parametrize("pathway", ["one-step", "two-step"])
def test_phase_fractions_and_pathway_follow_the_truth(pathway, camera):
    model = AssemblyModel(pathway=pathway)
    q = default_q_nm()
    rng = np.random.default_rng(3)
    analysis = AssemblySeriesAnalysis(q, camera, refit_every=100)
    times = np.concatenate([[-10.0], np.arange(0.0, 420.0, 20.0)])
    for k, t in enumerate(times):
        curve = model.measure(t, q, rng=k)
        analysis.add_frame(t, curve.intensity, curve.sigma, _powder_image(model, t, camera, rng))
    result = analysis.result()
    series = result["series"]
    truth = model.fractions(times).as_array()
    fitted = np.stack([series["dilute"], series["dense"], series["crystal"]], axis=1)
    assert np.max(np.abs(fitted - truth)) < 0.05
    assert series["pathway"] == pathway
    assert result["crystal"]["lattice"] == "fcc"
    assert result["crystal"]["a_nm"] == pytest.approx(model.a_nm, rel=0.01)
    # a powder of supercrystals scatters isotropic rings: no angular order
    assert result["symmetry"]["final_order"] == 0
    assert result["symmetry"]["change"] is None


def test_hexagonal_to_square_transition_is_found_within_one_frame(camera):
    truth = HexToSquareTransition(t_transition_s=25.0)
    q = default_q_nm()
    analysis = AssemblySeriesAnalysis(q, camera, phases=False)
    frame_s = 2.0
    orders = []
    for k, t in enumerate(np.arange(0.0, 60.0, frame_s)):
        image = truth.pattern(t, orientation_deg=17.0).on_detector(camera.q_map, camera.phi_map, rng=k)
        curve = _azimuthal_mean(image, camera, q)
        sym = analysis.add_frame(t, curve, None, image)
        orders.append(None if sym is None else sym.order)
    assert orders[0] == 6 and orders[-1] == 4
    result = analysis.result()
    change = result["symmetry"]["change"]
    assert (change["from_order"], change["to_order"]) == (6, 4)
    assert abs(change["time_s"] - truth.t_transition_s) <= frame_s
    assert result["symmetry"]["ring_q_nm"] == pytest.approx(truth.first_ring_nm(0.0), rel=0.03)
    assert result["series"] is None


def test_dodecagonal_quasicrystal_reports_twelve_fold(camera):
    q = default_q_nm()
    analysis = AssemblySeriesAnalysis(q, camera, phases=False)
    for k in range(6):
        image = dodecagonal_spots(0.8, orientation_deg=4.0).on_detector(camera.q_map, camera.phi_map, rng=k)
        analysis.add_frame(float(k), _azimuthal_mean(image, camera, q), None, image)
    result = analysis.result()
    assert result["symmetry"]["final_order"] == 12
    assert all(order == 12 for order in result["symmetry"]["order"])
    c = result["symmetry"]
    assert c["c12"][-1] > 10 * max(c["c4"][-1], c["c6"][-1])


def test_isotropic_ring_turning_twelve_fold_reports_the_onset(camera):
    q = default_q_nm()
    analysis = AssemblySeriesAnalysis(q, camera, ring_q_nm=0.8, phases=False)
    for k, t in enumerate(np.arange(0.0, 20.0, 2.0)):
        ordered = t >= 9.0
        pattern = dodecagonal_spots(0.8, scale=200.0 if ordered else 0.0)
        image = pattern.on_detector(camera.q_map, camera.phi_map, rng=k) + \
            np.random.default_rng(k).poisson(20 * np.exp(-0.5 * ((camera.q_map - 0.8) / 0.03) ** 2))
        analysis.add_frame(t, _azimuthal_mean(image, camera, q), None, image)
    change = analysis.result()["symmetry"]["change"]
    assert change == {"from_order": 0, "to_order": 12, "time_s": 10.0}


def test_a_curve_on_another_q_axis_is_refused(camera):
    analysis = AssemblySeriesAnalysis(default_q_nm(), camera)
    with pytest.raises(ValueError, match="points"):
        analysis.add_frame(0.0, np.ones(10))


def _azimuthal_mean(image: np.ndarray, camera: DetectorGeometry, q: np.ndarray) -> np.ndarray:
    """I(q) of an image on the q axis (mean per q bin, interpolated over empty bins)."""
    edges = np.concatenate([[q[0] - (q[1] - q[0]) / 2], (q[1:] + q[:-1]) / 2, [q[-1] + (q[1] - q[0]) / 2]])
    idx = np.digitize(camera.q_map.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < q.size)
    sums = np.bincount(idx[ok], image.ravel()[ok].astype(float), minlength=q.size)
    counts = np.bincount(idx[ok], minlength=q.size)
    filled = counts > 0
    return np.interp(q, q[filled], sums[filled] / counts[filled])
