"""Solid-angle and polarisation corrections: ring profiles and cuts as pyFAI's arrays say."""

import math
import warnings

import numpy as np
import pytest

from mc_beamline.analysis.detector.corrections import IntensityCorrections
from mc_beamline.analysis.detector.polar import RingPolarOperator, azimuth_bin_index
from mc_beamline.analysis.xcca.disorder import PeakCutAccumulator
from mc_beamline.analysis.xcca.frame import RingSettings, XccaFrameEngine
from mc_beamline.instrument.geometry import DetectorGeometry, GeometryError

RINGS = [(15.0, 0.5), (25.0, 0.6)]
FACTOR = 0.95


@pytest.fixture(scope="module")
def geom():
    """A tilted detector close to the sample (Ω·P varies by 13–33 % along each ring), 12.4 keV, 12 mm."""
    return DetectorGeometry(shape=(240, 250), pixel1_m=75e-6, pixel2_m=75e-6, dist_m=0.012,
                            poni1_m=120.5 * 75e-6, poni2_m=124.5 * 75e-6, wavelength_m=1.0e-10,
                            rot1=0.12, rot2=-0.08)


@pytest.fixture(scope="module")
def pyfai_norm(geom):
    """Ω·P straight from pyFAI's integrator (float64 product of its arrays)."""
    ai = geom.integrator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa = np.asarray(ai.solidAngleArray(geom.shape), dtype=np.float64)
        pol = np.asarray(ai.polarization(geom.shape, factor=FACTOR), dtype=np.float64)
    return sa * pol


def _bins(geom, q0, hw, n_bins):
    ring = np.abs(geom.q_map - q0) <= hw
    return ring, azimuth_bin_index(geom.phi_map, n_bins)


def test_flat_frame_profile_is_counts_over_the_summed_normalisation(geom, pyfai_norm):
    """Each bin gives pyFAI's corrected intensity Σ v / Σ Ω·P, to float32 precision."""
    norm = IntensityCorrections(solid_angle=True, polarization_factor=FACTOR).normalization(geom)
    op = RingPolarOperator(geom, RINGS, n_bins=90, n_radial=1, normalization=norm)
    prof = op.regroup(np.full(geom.shape, 5, dtype=np.uint32))
    for r, (q0, hw) in enumerate(RINGS):
        ring, k = _bins(geom, q0, hw, 90)
        n_pix = np.bincount(k[ring], minlength=90)
        expected = 5.0 * n_pix / np.bincount(k[ring], weights=pyfai_norm[ring], minlength=90)
        filled = n_pix > 0
        np.testing.assert_allclose(prof.mean[r][filled], expected[filled], rtol=2e-7)
        # the correction matters here: the profile is far from flat
        assert np.ptp(prof.mean[r][filled]) > 0.05 * 5.0


def test_each_correction_alone_follows_its_pyfai_array(geom):
    ai = geom.integrator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrays = {"solid": ai.solidAngleArray(geom.shape), "pol": ai.polarization(geom.shape, factor=-0.5)}
    for name, corr in (("solid", IntensityCorrections(solid_angle=True)),
                       ("pol", IntensityCorrections(polarization_factor=-0.5))):
        op = RingPolarOperator(geom, RINGS[1:], n_bins=60, n_radial=1, normalization=corr.normalization(geom))
        mean = op.regroup(np.full(geom.shape, 3.0)).mean[0]
        ring, k = _bins(geom, *RINGS[1], 60)
        expected = 3.0 * np.bincount(k[ring], minlength=60) / np.bincount(
            k[ring], weights=np.asarray(arrays[name], np.float64)[ring], minlength=60)
        np.testing.assert_allclose(mean, expected, rtol=2e-7, err_msg=name)


def test_an_isotropic_scatterer_comes_out_flat(geom, pyfai_norm):
    """What the detector records of a uniform ring, I·Ω·P, is I again after the correction
    (with radial slices and a masked sector); without it, it is not."""
    frame = 100.0 * pyfai_norm
    mask = (geom.phi_map > 10) & (geom.phi_map < 50) & (geom.q_map < RINGS[1][0])
    norm = IntensityCorrections(solid_angle=True, polarization_factor=FACTOR).normalization(geom)
    corrected = RingPolarOperator(geom, RINGS, 180, mask, normalization=norm).regroup(frame).mean
    raw = RingPolarOperator(geom, RINGS, 180, mask).regroup(frame).mean
    ok = np.isfinite(corrected)
    np.testing.assert_allclose(corrected[ok], 100.0, rtol=1e-6)
    assert np.nanmax(np.abs(raw / 100.0 - 1)) > 0.02


def test_without_corrections_nothing_changes(geom):
    assert IntensityCorrections().normalization(geom) is None
    assert not IntensityCorrections(solid_angle=False, polarization_factor=None).active
    assert IntensityCorrections(polarization_factor=0).active  # 0 corrects an unpolarised beam
    rng = np.random.default_rng(4)
    frame = rng.poisson(20.0, geom.shape).astype(np.uint32)
    plain = RingPolarOperator(geom, RINGS, 120).regroup(frame)
    again = RingPolarOperator(geom, RINGS, 120, normalization=None).regroup(frame)
    assert np.array_equal(plain.mean, again.mean, equal_nan=True)


@pytest.mark.parametrize("factor", [1.5, -1.01, math.nan, math.inf, "0.9", True])
def test_polarisation_factor_must_be_in_minus_1_to_1(factor):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        IntensityCorrections(polarization_factor=factor)


def test_geometry_refuses_a_polarisation_factor_out_of_range(geom):
    with pytest.raises(GeometryError, match=r"\[-1, 1\]"):
        geom.polarization_map(1.2)


def test_normalisation_of_the_wrong_shape_is_refused(geom):
    with pytest.raises(ValueError, match="Normalisation shape"):
        RingPolarOperator(geom, RINGS, normalization=np.ones((4, 4)))


def test_pixels_without_a_usable_normalisation_are_masked(geom):
    norm = np.ones(geom.shape)
    ring, _ = _bins(geom, *RINGS[1], 120)
    dead = np.flatnonzero(ring.ravel())[:40]
    norm.ravel()[dead[:20]] = 0.0
    norm.ravel()[dead[20:]] = np.nan
    op = RingPolarOperator(geom, RINGS, 120, normalization=norm)
    assert op.n_static.sum() == RingPolarOperator(geom, RINGS, 120).n_static.sum() - 40
    assert not np.isin(dead, op.pixels).any()


def test_a_uniform_normalisation_leaves_ccf_and_peaks_alone(geom):
    """Dividing every pixel by one constant scales profiles and their noise alike: the CCF
    (normalised per ring), the peaks and their signal-to-noise stay the same."""
    rng = np.random.default_rng(5)
    q, phi = geom.q_map, geom.phi_map
    level = 20.0 + 400.0 * np.exp(-0.5 * (((phi - 40.0 + 180) % 360 - 180) / 3.0) ** 2) * (np.abs(q - 25.0) < 0.6)
    level += 300.0 * np.exp(-0.5 * (((phi + 100.0 + 180) % 360 - 180) / 2.0) ** 2) * (np.abs(q - 15.0) < 0.5)
    frame = rng.poisson(level).astype(np.uint32)
    settings = [RingSettings(q0, hw, 1.0, 7.0) for q0, hw in RINGS]
    plain = XccaFrameEngine(geom, settings, 180).process(frame)
    scaled = XccaFrameEngine(geom, settings, 180, normalization=np.full(geom.shape, 0.8)).process(frame)
    np.testing.assert_allclose(scaled.profiles.mean, plain.profiles.mean / 0.8, rtol=1e-12)
    np.testing.assert_allclose(scaled.ccf, plain.ccf, rtol=1e-9, atol=1e-12)
    assert [len(p) for p in plain.peaks] == [len(p) for p in scaled.peaks] and plain.peaks[1]
    for a, b in zip(sum(plain.peaks, []), sum(scaled.peaks, [])):
        assert b.azimuth_deg == pytest.approx(a.azimuth_deg, abs=1e-9)
        assert b.snr == pytest.approx(a.snr, rel=1e-9)
        assert b.prominence == pytest.approx(a.prominence / 0.8, rel=1e-9)


def test_peak_cut_divides_each_pixel_by_its_normalisation(geom, pyfai_norm):
    rng = np.random.default_rng(6)
    frame = rng.poisson(50.0, geom.shape).astype(np.uint32)
    plain = PeakCutAccumulator(geom, None, 25.0, 1.0)
    cut = PeakCutAccumulator(geom, None, 25.0, 1.0, normalization=pyfai_norm)
    s0, c0 = plain.frame_cut(frame, 30.0)
    s1, c1 = cut.frame_cut(frame, 30.0)
    assert np.array_equal(c0, c1)
    s_np, c_np = cut._frame_cut_numpy(frame, 30.0)
    assert np.array_equal(s1, s_np) and np.array_equal(c1, c_np)  # compiled = NumPy reference
    # per pixel v / n: the cut of v = I·n is I in every cell
    flat = cut.frame_cut(40.0 * pyfai_norm, 30.0)
    filled = flat[1] > 0
    np.testing.assert_allclose(flat[0][filled] / flat[1][filled], 40.0, rtol=1e-6)
    assert not np.allclose(s1[filled], s0[filled])
