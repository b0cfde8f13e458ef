"""Hot pixels: found when they stand out of their ring in many frames, not Bragg peaks that move."""

import numpy as np
import pytest

from mc_beamline.analysis.detector.hot_pixels import (
    MIN_FRAMES,
    HotPixelSearch,
    neighbourhood_half_widths,
)
from mc_beamline.analysis.detector.polar import GAP_VALUE_U32, RingPolarOperator
from tests.analysis.detector.conftest import SMALL_RINGS

RINGS = SMALL_RINGS


@pytest.fixture(scope="module")
def geom(small_geometry):
    return small_geometry


@pytest.fixture(scope="module")
def op(small_operator):
    return small_operator


def _pixel_at(geom, q, phi):
    """Flat index of the pixel nearest to (q, φ)."""
    d = (geom.q_map - q) ** 2 / 0.05**2 + ((geom.phi_map - phi + 180) % 360 - 180) ** 2
    return int(np.argmin(d))


def _frames(geom, n, rng, hot=(), bragg_phi=None):
    """Poisson frames of a ring pattern; ``hot`` pixels read 5000 in every frame; frame k
    has a sharp Bragg spot (Gaussian, σ = 1.2 pixels, 3000 counts at its centre) on the
    6 nm⁻¹ ring at ``bragg_phi[k]``."""
    q = geom.q_map
    level = 3.0 + 40.0 * np.exp(-0.5 * ((q - 3.0) / 0.08) ** 2) + 25.0 * np.exp(-0.5 * ((q - 6.0) / 0.1) ** 2)
    out = []
    for k in range(n):
        frame = rng.poisson(level).astype(np.uint32)
        if bragg_phi is not None:
            r, c = divmod(_pixel_at(geom, 6.0, bragg_phi[k]), geom.shape[1])
            dr, dc = np.mgrid[-3:4, -3:4]
            frame[r - 3 : r + 4, c - 3 : c + 4] += np.round(3000 * np.exp(-(dr**2 + dc**2) / 2.88)).astype(np.uint32)
        frame.ravel()[list(hot)] = 5000
        out.append(frame)
    return out


def test_planted_hot_pixels_are_found_and_moving_bragg_spots_are_not(geom, op):
    rng = np.random.default_rng(1)
    hot = [_pixel_at(geom, 6.0, 33.0), _pixel_at(geom, 3.0, -120.0), _pixel_at(geom, 6.1, 150.0)]
    bragg = rng.uniform(-180, 180, 12)
    sparks = [_pixel_at(geom, 6.0, phi) for phi in np.linspace(-170, 170, 12)]  # one-pixel spots
    search = HotPixelSearch(op)
    for k, frame in enumerate(_frames(geom, 12, rng, hot, bragg)):
        frame.ravel()[sparks[k]] = 3000
        search.add(frame)
    assert search.hot_pixels().tolist() == sorted(hot)
    # each one-pixel spot stood out, in its own frame only
    assert search.exceed[np.isin(op.pixels, sparks)].tolist() == [1] * 12
    assert search.exceed.max() == 12 and np.sort(search.exceed)[-4] == 1


def test_a_spot_that_stays_is_hot_only_if_it_is_a_lone_pixel(geom, op):
    """A Bragg spot on the same pixels in every frame stands above the ring but not above its
    own pixels: not hot. A one-pixel spot that stays is the documented limit: hot."""
    rng = np.random.default_rng(2)
    lone = _pixel_at(geom, 6.0, -150.0)
    search = HotPixelSearch(op)
    for frame in _frames(geom, 12, rng, bragg_phi=np.full(12, 70.0)):
        frame.ravel()[lone] = 400
        search.add(frame)
    assert search.hot_pixels().tolist() == [lone]
    r, c = divmod(_pixel_at(geom, 6.0, 70.0), geom.shape[1])
    spot = [(r + dr) * geom.shape[1] + c + dc for dr in range(-3, 4) for dc in range(-3, 4)]
    on_ring = np.isin(op.pixels, spot)
    assert on_ring.sum() >= 10 and search.exceed[on_ring].max() == 0


def test_a_hot_pixel_next_to_masked_pixels_is_found(geom):
    """Masked neighbours (a module gap) leave the local test the remaining ones."""
    rng = np.random.default_rng(6)
    pixel = _pixel_at(geom, 6.0, 20.0)
    r, c = divmod(pixel, geom.shape[1])
    mask = np.zeros(geom.shape, dtype=bool)
    mask[r - 1, :] = True  # the row above: three of the eight neighbours
    frames = _frames(geom, 8, rng, hot=[pixel])
    for frame in frames:
        frame[r - 1, :] = 10**6  # whatever masked pixels read, they are no one's neighbours
    search = HotPixelSearch(RingPolarOperator(geom, RINGS, n_bins=180, mask=mask), mask)
    for frame in frames:
        search.add(frame)
    assert search.hot_pixels().tolist() == [pixel]


def test_noise_alone_gives_no_hot_pixel(geom, op):
    rng = np.random.default_rng(3)
    search = HotPixelSearch(op, n_sigma=10.0, min_fraction=0.5)
    for frame in _frames(geom, 16, rng):
        search.add(frame)
    assert search.hot_pixels().size == 0 and search.exceed.max() <= 1


def test_a_hot_pixel_needs_the_fraction_of_frames_and_at_least_four(geom, op):
    rng = np.random.default_rng(4)
    pixel = _pixel_at(geom, 6.0, -60.0)
    search = HotPixelSearch(op, min_fraction=0.5)
    frames = _frames(geom, 10, rng)
    for k, frame in enumerate(frames):
        if k < 4:  # hot in 4 of 10 frames: below half
            frame.ravel()[pixel] = 5000
        search.add(frame)
    assert search.min_count == 5 and search.hot_pixels().size == 0
    few = HotPixelSearch(op)
    for frame in _frames(geom, MIN_FRAMES - 1, rng, hot=[pixel]):
        few.add(frame)
    assert few.exceed.max() == MIN_FRAMES - 1 and few.hot_pixels().size == 0


def test_bad_values_neither_stand_out_nor_count(geom, op):
    rng = np.random.default_rng(5)
    pixel = _pixel_at(geom, 6.0, 100.0)
    search = HotPixelSearch(op)
    for frame in _frames(geom, 8, rng):
        frame.ravel()[pixel] = GAP_VALUE_U32
        search.add(frame)
        search.add(frame.astype(np.float32))  # 2³²-1 after a float conversion is still bad
    assert search.hot_pixels().size == 0 and search.exceed.max() <= 1


def test_neighbourhoods_grow_until_they_hold_enough_pixels():
    counts = np.zeros((1, 3, 12), dtype=np.int64)
    counts[0, 0] = 40  # every bin is enough alone
    counts[0, 1] = 5
    counts[0, 1, 3] = 0
    counts[0, 2] = 1  # the whole slice is not enough: the widest window, all but one bin
    w = neighbourhood_half_widths(counts, min_neighbours=32).reshape(3, 12)
    assert w[0].tolist() == [0] * 12
    # bin 0: bins 9 … 3 (wrapping round) hold 30 pixels, bins 8 … 4 hold 40
    assert w[1, 0] == 4 and w[1, 6] == 4 and w[1, 9] == 3
    assert w[2].tolist() == [5] * 12
