"""Corrections in the XCCA pipeline: a hot pixel on the atomic ring is masked for the whole
run and never reaches the CCF; the result records the corrections; every way of feeding
the frames gives the same numbers."""

import json

import numpy as np
import pytest

from mc_beamline.analysis.xcca.pipeline import XccaAnalysis
from mc_beamline.physics.detector_model import offaxis_geometry
from mc_beamline.physics.mesocrystal import MesocrystalParams, MesocrystalSimulator, seed_raster_positions

PARAMS = MesocrystalParams()
N_FRAMES = 40
SCAN = (1, N_FRAMES)
HOT_VALUE = 60_000


@pytest.fixture(scope="module")
def sim():
    return MesocrystalSimulator(PARAMS, offaxis_geometry())


@pytest.fixture(scope="module")
def hot_pixel(sim):
    """A pixel on the atomic ring (18.3 nm⁻¹) at φ ≈ 45°, inside the arc the detector sees."""
    g = sim.geometry
    d = ((g.q_map - 18.3) / 0.02) ** 2 + (g.phi_map - 45.0) ** 2
    d[sim.mask] = np.inf
    return int(np.argmin(d))


@pytest.fixture(scope="module")
def frames(sim, hot_pixel):
    """The first raster row of the seed sample, with the hot pixel at 60 000 counts in every frame."""
    ys, xs = seed_raster_positions()
    out = np.stack([sim.frame(xs[k], ys[0], noise_key=k) for k in range(N_FRAMES)])
    out.reshape(N_FRAMES, -1)[:, hot_pixel] = HOT_VALUE
    return out


def _analysis(sim, mask=None, **options):
    return XccaAnalysis(sim.geometry, sim.mask if mask is None else mask, PARAMS.q112_nm, 18.3, SCAN, 0.4, **options)


def _one_by_one(ana, frames):
    for k, frame in enumerate(frames):
        ana.add_frame(k, frame)
    return ana


def _without_corrections(result):
    return json.dumps({k: v for k, v in result.items() if k != "corrections"})


@pytest.fixture(scope="module")
def searched(sim, frames):
    return _one_by_one(_analysis(sim), frames)


def test_hot_pixel_is_found_and_masked_for_every_frame(sim, frames, hot_pixel, searched):
    res = searched.result()
    row, col = divmod(hot_pixel, sim.geometry.shape[1])
    assert res["corrections"] == {"solid_angle": True, "polarization_factor": None,
                                  "hot_pixels": {"count": 1, "pixels": [[row, col]]}}
    # the same as masking the pixel from the start: the first 32 frames were analysed again
    mask = sim.mask.copy()
    mask.reshape(-1)[hot_pixel] = True
    masked = _one_by_one(_analysis(sim, mask), frames)
    assert masked.result()["corrections"]["hot_pixels"] == {"count": 0, "pixels": []}
    assert _without_corrections(res) == _without_corrections(masked.result())
    for k in (0, 31, 39):
        a, b = searched.records[k], masked.records[k]
        assert np.array_equal(a.al_peaks, b.al_peaks)
        assert (a.ccf is None and b.ccf is None) or np.array_equal(a.ccf, b.ccf, equal_nan=True)
    assert res["n_selected"] > 0


def test_without_the_search_the_hot_pixel_reaches_the_profiles_and_the_ccf(sim, frames, hot_pixel, searched):
    plain = _one_by_one(_analysis(sim, hot_pixel_frames=0), frames)
    res = plain.result()
    assert res["corrections"]["hot_pixels"] is None
    assert _without_corrections(res) != _without_corrections(searched.result())
    phi = float(sim.geometry.phi_map.reshape(-1)[hot_pixel])
    spiked = [f for f in res["frames"] if any(abs(p - phi) < 1.5 for p in f["al_peaks_deg"])]
    clean = [f for f in searched.result()["frames"] if any(abs(p - phi) < 1.5 for p in f["al_peaks_deg"])]
    assert len(spiked) > N_FRAMES // 2 > len(clean)


def test_the_moving_bragg_peaks_of_the_sample_are_not_hot(sim, frames, hot_pixel, searched):
    """The simulated frames hold {111} and superlattice peaks that move from grain to grain
    along the row: none of their pixels is taken for a hot pixel."""
    assert searched.hot_pixels.tolist() == [hot_pixel]
    assert searched.result()["n_selected"] > 0


def test_batches_and_a_state_round_trip_during_the_search_give_the_same_result(sim, frames, searched):
    batched = _analysis(sim)
    for start in range(0, N_FRAMES, 12):  # the batch of frames 24 … 35 straddles K = 32
        stop = min(start + 12, N_FRAMES)
        batched.add_frames(list(range(start, stop)), frames[start:stop])
    early = _analysis(sim)
    for k in range(10):
        early.add_frame(k, frames[k])
    assert early.hot_pixels is None  # still searching
    restored = XccaAnalysis.from_state(early.to_state(), sim.geometry, sim.mask)
    for k in range(10, N_FRAMES):
        restored.add_frame(k, frames[k])
    expected = json.dumps(searched.result())
    assert json.dumps(batched.result()) == expected
    assert json.dumps(restored.result()) == expected


def test_the_search_counts_frames_received_not_raster_indices(sim, frames, hot_pixel, searched):
    """Frames in the order an adaptive raster measures them (every fourth first): the first
    K = 32 received are searched, as many as a full raster searches, and every frame ends up
    with the same mask and record as in index order."""
    order = list(range(0, N_FRAMES, 4)) + [k for k in range(N_FRAMES) if k % 4]
    shuffled = _analysis(sim)
    for n, k in enumerate(order):
        shuffled.add_frame(k, frames[k])
        if n == 30:
            assert shuffled.hot_pixels is None  # 31 frames in, with indices up to 39: still searching
    assert shuffled.hot_pixels.tolist() == [hot_pixel]
    assert json.dumps(shuffled.result()) == json.dumps(searched.result())


def test_a_short_scan_ends_the_search_when_its_frames_are_in(sim, frames, hot_pixel):
    short = XccaAnalysis(sim.geometry, sim.mask, PARAMS.q112_nm, 18.3, (1, 8), 0.4)
    for k in range(8):
        short.add_frame(k, frames[k])
    assert short.hot_pixels.tolist() == [hot_pixel]  # 8 of 8 frames, before any result was asked for


def test_polarisation_is_recorded_and_divides_the_profiles(sim, frames):
    pol = _analysis(sim, polarization_factor=0.99, hot_pixel_frames=0, correct_solid_angle=False)
    off = _analysis(sim, hot_pixel_frames=0, correct_solid_angle=False)
    assert pol.result()["corrections"] == {"solid_angle": False, "polarization_factor": 0.99, "hot_pixels": None}
    with np.errstate(invalid="ignore"):  # bins off the detector are NaN in both
        ratio = pol.engine.process(frames[3]).profiles.mean / off.engine.process(frames[3]).profiles.mean
    ok = np.isfinite(ratio[1])
    assert ok.sum() > 90
    # each bin by its |bin| / Σ P, up to the reweighting of the radial slices (< 0.5 %)
    np.testing.assert_allclose(ratio[1][ok], pol.engine.operator.bin_scale[1][ok], rtol=5e-3)
    # the atomic ring swings by cos 2φ: ±4.6 % at 2θ ≈ 17°
    assert ratio[1][ok].max() / ratio[1][ok].min() > 1.05


@pytest.mark.parametrize("options, message", [
    ({"polarization_factor": 1.2}, r"\[-1, 1\]"),
    ({"hot_pixel_frames": -1}, "hot pixels"),
    ({"hot_pixel_frames": 2.5}, "hot pixels"),
    ({"hot_pixel_min_fraction": 0.0}, "fraction"),
    ({"hot_pixel_n_sigma": -3.0}, "σ"),
])
def test_bad_correction_settings_are_refused(sim, options, message):
    with pytest.raises(ValueError, match=message):
        _analysis(sim, **options)


def test_analyses_that_masked_different_hot_pixels_do_not_merge(sim, frames, hot_pixel):
    first = _one_by_one(_analysis(sim), frames[:32])  # frames 0 … 31: the search found the pixel
    clean = frames[32:].copy()  # frames 32 … 39 without the hot pixel (its neighbour's counts)
    clean.reshape(len(clean), -1)[:, hot_pixel] = clean.reshape(len(clean), -1)[:, hot_pixel + 1]
    rest = _analysis(sim)
    for k, frame in zip(range(32, N_FRAMES), clean):  # searched: nothing hot in them
        rest.add_frame(k, frame)
    rest.details()  # ends its search
    assert first.hot_pixels.tolist() == [hot_pixel] and rest.hot_pixels.tolist() == []
    with pytest.raises(ValueError, match="different hot pixels"):
        first.merge(rest)
