"""Mask files: an EDF or TIFF mask (as pyFAI-drawmask writes them) is the same mask as the
``.npy`` array; nonzero is bad; unusable files are one sentence."""

from __future__ import annotations

import numpy as np
import pytest
from fabio.edfimage import EdfImage
from fabio.tifimage import TifImage

from mc_beamline.analysis.detector.masks import MaskError, load_mask

SHAPE = (37, 52)


@pytest.fixture
def mask() -> np.ndarray:
    m = np.zeros(SHAPE, np.uint8)
    m[10:14, :] = 1          # a gap row band
    m[30, 7] = 1             # a hot pixel
    m[0, 51] = 255           # nonzero, not 1: still bad
    return m


@pytest.mark.parametrize("name, write", [
    ("mask.edf", lambda p, m: EdfImage(data=m.astype(np.int8)).write(str(p))),  # pyFAI-drawmask's EDF
    ("mask.edf", lambda p, m: EdfImage(data=m.astype(np.float32)).write(str(p))),
    ("mask.tif", lambda p, m: TifImage(data=m).write(str(p))),
    ("mask.TIFF", lambda p, m: TifImage(data=m.astype(np.uint16)).write(str(p))),
])
def test_edf_and_tiff_masks_equal_the_npy_mask(tmp_path, mask, name, write):
    np.save(tmp_path / "mask.npy", mask)
    write(tmp_path / name, mask)
    expected = load_mask(tmp_path / "mask.npy", SHAPE)
    got = load_mask(tmp_path / name, SHAPE)
    assert got.dtype == bool and expected.dtype == bool
    assert np.array_equal(got, expected) and np.array_equal(got, mask != 0)


@pytest.mark.parametrize("name, content, message", [
    ("mask.edf", b"not an image", "does not read as an EDF or TIFF image"),
    ("mask.tif", b"II*\x00 broken", "does not read as an EDF or TIFF image"),
    ("mask.dat", b"neither", "not a .npy array"),
])
def test_unreadable_mask_files_are_one_sentence(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MaskError) as exc:
        load_mask(tmp_path / name, SHAPE)
    assert message in str(exc.value) and "\n" not in str(exc.value) and str(exc.value).endswith(".")


def test_image_mask_of_another_shape_is_refused(tmp_path):
    TifImage(data=np.zeros((5, 6), np.uint8)).write(str(tmp_path / "mask.tif"))
    with pytest.raises(MaskError, match=r"shape \(5, 6\)"):
        load_mask(tmp_path / "mask.tif", SHAPE)
