"""The compiled ring gather against a plain NumPy reference, for every kind of bad pixel."""

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import bad_value_mask
from mc_beamline.analysis.detector.ring_gather import GAP_VALUE_U32, RingGather


def reference(flat: np.ndarray, pixels: np.ndarray, segments: np.ndarray, n_segments: int):
    values = flat[:, pixels]
    bad = bad_value_mask(values)
    good_values = np.where(bad, 0, values).astype(np.float64)
    sums = np.zeros((flat.shape[0], n_segments))
    n_bad = np.zeros((flat.shape[0], n_segments), dtype=np.int64)
    for f in range(flat.shape[0]):
        np.add.at(sums[f], segments, good_values[f])
        np.add.at(n_bad[f], segments, bad[f])
    return sums, n_bad


@pytest.fixture(scope="module")
def layout():
    rng = np.random.default_rng(7)
    n_pixels = 200_000
    # runs of neighbouring pixels, as rings cut detector rows, in scrambled order
    starts = np.sort(rng.choice(n_pixels - 64, 900, replace=False))
    pixels = np.unique(np.concatenate([s + np.arange(rng.integers(1, 60)) for s in starts]))
    pixels = rng.permutation(pixels)
    segments = rng.integers(0, 257, pixels.size)
    return n_pixels, pixels, segments, 257


@pytest.mark.parametrize(
    "dtype", [np.uint32, np.uint16, np.uint64, np.int16, np.int32, np.int64, np.float32, np.float64]
)
def test_sums_and_bad_counts_equal_the_reference(layout, dtype):
    n_pixels, pixels, segments, n_seg = layout
    rng = np.random.default_rng(1)
    flat = rng.integers(0, 1000, (3, n_pixels)).astype(dtype)
    hit = pixels[::37]
    if np.dtype(dtype).kind == "u":
        flat[1, hit] = np.iinfo(dtype).max
    elif np.dtype(dtype).kind == "i":
        flat[1, hit] = -3
        if np.iinfo(dtype).max >= GAP_VALUE_U32:
            flat[2, pixels[::41]] = GAP_VALUE_U32
    else:
        flat[1, hit] = np.nan
        flat[2, pixels[::41]] = -np.inf
        flat[2, pixels[::43]] = GAP_VALUE_U32
    gather = RingGather(pixels, segments, n_seg)
    sums, n_bad = gather.sums(flat)
    ref_sums, ref_bad = reference(flat, pixels, segments, n_seg)
    np.testing.assert_array_equal(sums, ref_sums)
    assert n_bad is not None
    np.testing.assert_array_equal(n_bad, ref_bad)
    assert n_bad[1].sum() == hit.size


def test_clean_frames_report_no_bad_pixels(layout):
    n_pixels, pixels, segments, n_seg = layout
    flat = np.arange(2 * n_pixels, dtype=np.uint32).reshape(2, n_pixels)
    sums, n_bad = RingGather(pixels, segments, n_seg).sums(flat)
    assert n_bad is None
    np.testing.assert_array_equal(sums, reference(flat, pixels, segments, n_seg)[0])


def test_boolean_frames_are_refused(layout):
    n_pixels, pixels, segments, n_seg = layout
    with pytest.raises(TypeError, match="not supported"):
        RingGather(pixels, segments, n_seg).sums(np.zeros((1, n_pixels), dtype=bool))


@pytest.mark.parametrize("dtype", [np.uint32, np.float32])
def test_a_segment_scale_multiplies_each_finished_sum(layout, dtype):
    n_pixels, pixels, segments, n_seg = layout
    rng = np.random.default_rng(2)
    flat = rng.integers(0, 1000, (2, n_pixels)).astype(dtype)
    flat[1, pixels[::29]] = np.iinfo(np.uint32).max if dtype == np.uint32 else np.nan
    scale = rng.uniform(0.5, 2.0, n_seg)
    sums, n_bad = RingGather(pixels, segments, n_seg, scale).sums(flat)
    plain, plain_bad = RingGather(pixels, segments, n_seg).sums(flat)
    np.testing.assert_array_equal(sums, plain * scale)
    np.testing.assert_array_equal(n_bad, plain_bad)
    with pytest.raises(ValueError, match="one scale factor per segment"):
        RingGather(pixels, segments, n_seg, scale[:-1])
