"""Frame sources: one HDF5 file, an Eiger master with its linked data files, and CBF/EDF/TIFF
series give their frames in order through one interface, with the master's pixel mask and
NXmx geometry; every unusable file is one sentence naming it."""

from __future__ import annotations

import random

import h5py
import numpy as np
import pytest
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.io.frame_sources import (
    Hdf5FrameSource,
    ImageSeriesSource,
    natural_key,
    open_frames,
)
from mc_beamline.io.inputs import InputError
from tests.io.detector_files import nxmx_header, write_eiger, write_series

SHAPE = (30, 41)
GEOMETRY = DetectorGeometry(shape=SHAPE, pixel1_m=172e-6, pixel2_m=75e-6, dist_m=0.2134, poni1_m=3.1e-3,
                            poni2_m=1.7e-3, wavelength_m=0.8921e-10)
"""Beam nearer one side than the other, rectangular pixels: x and y cannot be confused."""


def counts(n: int, dtype="<u4", seed: int = 0) -> np.ndarray:
    """``n`` frames of Poisson counts in which frame k holds k at pixel (0, 0) (its number)."""
    frames = np.random.default_rng(seed).poisson(3.0, (n, *SHAPE)).astype(dtype)
    frames[:, 0, 0] = np.arange(n)
    return frames


def read_all(source, batch: int) -> np.ndarray:
    """Every frame of ``source``, read in batches of ``batch`` into one reused buffer."""
    buf = np.empty((batch, *source.frame_shape), source.dtype)
    return np.concatenate([source.read_into(s, min(s + batch, source.n_frames), buf).copy()
                           for s in range(0, source.n_frames, batch)])


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.endswith(".")
    return text


# ----------------------------------------------------------------------------- HDF5
def test_one_hdf5_file_is_read_as_before(tmp_path):
    frames = counts(7)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames, chunks=(1, *SHAPE))
        f.create_dataset("/other/stack", data=frames[:3] * 2)
    with open_frames(path) as source:
        assert isinstance(source, Hdf5FrameSource)
        assert (source.n_frames, source.frame_shape, source.dtype) == (7, SHAPE, np.dtype("<u4"))
        assert source.pixel_mask is None and source.header_geometry is None
        assert source.label == f"{path}:/entry/data/data"
        assert np.array_equal(read_all(source, 3), frames)
    with open_frames(str(path), "/other/stack") as source:
        assert np.array_equal(read_all(source, 2), frames[:3] * 2)


@pytest.mark.parametrize("batch", [1, 4, 5, 12])
def test_eiger_master_reads_its_data_files_in_link_order(tmp_path, batch):
    frames = counts(12)
    master = write_eiger(tmp_path, "scan", frames, per_file=5)  # 5 + 5 + 2 frames
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "scan_data_000001.h5", "scan_data_000002.h5", "scan_data_000003.h5", "scan_master.h5"]
    with open_frames(master) as source:
        assert isinstance(source, Hdf5FrameSource)
        assert [p.name for p, _ in source.parts] == ["scan_data_000001.h5", "scan_data_000002.h5",
                                                     "scan_data_000003.h5"]
        assert (source.n_frames, source.frame_shape, source.dtype) == (12, SHAPE, np.dtype("<u4"))
        got = read_all(source, batch)  # batches of 4 and 5 cross the files' ends
    assert np.array_equal(got, frames)


def test_a_dataset_given_by_name_is_read_even_in_a_master(tmp_path):
    frames = counts(12)
    master = write_eiger(tmp_path, "scan", frames, per_file=5)
    with open_frames([master], "/entry/data/data_000002") as source:
        assert source.n_frames == 5 and source.pixel_mask is None
        assert np.array_equal(read_all(source, 5), frames[5:10])


def test_master_pixel_mask_nonzero_is_bad(tmp_path):
    pixel_mask = np.zeros(SHAPE, np.uint32)
    pixel_mask[3, 4] = 1      # gap
    pixel_mask[10, 20] = 8    # hot
    pixel_mask[29, 40] = 2**31
    master = write_eiger(tmp_path, "scan", counts(4), per_file=2, pixel_mask=pixel_mask)
    with open_frames(master) as source:
        assert source.pixel_mask.dtype == bool
        assert np.array_equal(source.pixel_mask, pixel_mask != 0)


def test_missing_data_file_is_one_sentence_naming_it(tmp_path):
    master = write_eiger(tmp_path, "scan", counts(9), per_file=3)
    (tmp_path / "scan_data_000002.h5").unlink()
    with pytest.raises(InputError) as exc:
        open_frames(master)
    text = one_sentence(exc)
    assert str(tmp_path / "scan_data_000002.h5") in text and "scan_master.h5" in text


def test_linked_files_of_another_frame_size_are_refused(tmp_path):
    master = write_eiger(tmp_path, "scan", counts(4), per_file=2)
    with h5py.File(tmp_path / "scan_data_000002.h5", "w") as f:
        f.create_dataset("/entry/data/data", data=np.zeros((2, 8, 8), "<u4"))
    with pytest.raises(InputError) as exc:
        open_frames(master)
    assert "scan_data_000002.h5" in one_sentence(exc) and "8x8" in str(exc.value)


def test_a_file_with_neither_dataset_nor_links_names_the_dataset(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_group("/entry/data")
    with pytest.raises(InputError, match="no dataset /entry/data/data"):
        open_frames(path)


# ------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("units", ["eiger", "other"])
def test_header_geometry_equals_the_poni_geometry_it_was_written_from(tmp_path, units):
    header = nxmx_header(GEOMETRY)
    if units == "other":  # the same numbers in other units NXmx allows
        header["detector_distance"] = (GEOMETRY.dist_m * 1e3, "mm")
        header["beam_center_x"] = (GEOMETRY.poni2_m, "m")
        header["incident_wavelength"] = (GEOMETRY.wavelength_m * 1e9, "nm")
    master = write_eiger(tmp_path, "scan", counts(2), per_file=2, header=header)
    poni = DetectorGeometry.from_poni(GEOMETRY.write_poni(tmp_path / "geometry.poni"))
    with open_frames(master) as source:
        g = source.header_geometry
    assert g is not None and source.header_geometry_problem is None
    assert g.shape == poni.shape == SHAPE
    np.testing.assert_allclose(g.q_map, poni.q_map, rtol=1e-6)
    np.testing.assert_allclose(g.phi_map, poni.phi_map, rtol=1e-6, atol=1e-4)
    assert g.rot1 == g.rot2 == g.rot3 == 0.0


def test_nxmx_beam_centre_is_pyfai_fit2d_centre():
    """beam_center_x/y are pyFAI's Fit2D centerX/centerY: x along columns, from the first pixel's corner."""
    ai = AzimuthalIntegrator(detector=None)
    ai.setFit2D(directDist=213.4, centerX=40.5, centerY=12.25, pixelX=75.0, pixelY=172.0)
    g = DetectorGeometry.from_nxmx(SHAPE, beam_center_xy_px=(40.5, 12.25), distance_m=0.2134,
                                   pixel_xy_m=(75e-6, 172e-6), wavelength_m=1e-10)
    assert g.poni1_m == pytest.approx(ai.poni1, rel=1e-12) and g.poni2_m == pytest.approx(ai.poni2, rel=1e-12)
    assert (g.pixel1_m, g.pixel2_m) == pytest.approx((ai.detector.pixel1, ai.detector.pixel2), rel=1e-12)
    assert g.dist_m == pytest.approx(ai.dist, rel=1e-12)
    assert g.beam_center_px == pytest.approx((12.25 - 0.5, 40.5 - 0.5))  # (row, column) of pixel centres


@pytest.mark.parametrize("change, clause", [
    (lambda h: h.pop("detector_distance"), "detector_distance is missing"),
    (lambda h: h.update(incident_wavelength=(0.0, "angstrom")), "incident_wavelength is 0"),
    (lambda h: h.update(x_pixel_size=(75.0, "furlong")), "unknown length unit 'furlong'"),
])
def test_incomplete_header_gives_no_geometry_and_says_why(tmp_path, change, clause):
    header = nxmx_header(GEOMETRY)
    change(header)
    master = write_eiger(tmp_path, "scan", counts(2), per_file=2, header=header)
    with open_frames(master) as source:
        assert source.header_geometry is None
        assert clause in source.header_geometry_problem and str(master) in source.header_geometry_problem


# --------------------------------------------------------------------- image series
@pytest.mark.parametrize("fmt, dtype", [("cbf", "<i4"), ("edf", "<u2"), ("tif", "<u4")])
def test_image_series_in_natural_order(tmp_path, fmt, dtype):
    frames = counts(12, dtype)
    files = write_series(tmp_path / "scan", frames, fmt, digits=1)  # img_1 ... img_12: 10 sorts before 2 as text
    expected_names = [p.name for p in files]
    for given in (tmp_path / "scan", str(tmp_path / "scan" / f"img_*.{fmt}"), random.sample(files, len(files))):
        with open_frames(given) as source:
            assert isinstance(source, ImageSeriesSource)
            assert [p.name for p in source.files] == expected_names
            assert (source.n_frames, source.frame_shape, source.dtype) == (12, SHAPE, np.dtype(dtype))
            assert source.pixel_mask is None and source.header_geometry is None
            assert source.stem == "img"
            assert np.array_equal(read_all(source, 5), frames)


def test_natural_key_orders_numbers_as_numbers():
    names = ["run2/img_10.cbf", "run2/img_9.cbf", "run10/img_1.cbf", "run2/img_0010.cbf"]
    assert sorted(names, key=natural_key) == ["run2/img_9.cbf", "run2/img_10.cbf", "run2/img_0010.cbf",
                                              "run10/img_1.cbf"]


def test_image_of_another_shape_is_one_sentence_naming_it(tmp_path):
    files = write_series(tmp_path, counts(3, "<i4"), "cbf")
    write_series(tmp_path, np.zeros((1, 8, 8), "<i4"), "cbf", first=4)
    with open_frames(tmp_path) as source:
        with pytest.raises(InputError) as exc:
            read_all(source, 4)
    assert "img_00004.cbf" in one_sentence(exc) and "8x8" in str(exc.value) and files[0].name in str(exc.value)


@pytest.mark.parametrize("given, message", [
    ("{tmp}/nothing_*.cbf", "No file matches"),
    ("{tmp}/empty", "holds no CBF, EDF or TIFF images"),
    ("{tmp}/*", "not a CBF, EDF or TIFF image"),
])
def test_series_that_cannot_be_read_are_one_sentence(tmp_path, given, message):
    write_series(tmp_path, counts(2, "<i4"), "cbf")
    (tmp_path / "notes.txt").write_text("beamtime notes\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as exc:
        open_frames(given.format(tmp=tmp_path))
    assert message in one_sentence(exc)


def test_dataset_does_not_apply_to_images(tmp_path):
    write_series(tmp_path, counts(2, "<i4"), "cbf")
    with pytest.raises(InputError, match="--dataset applies to HDF5 files"):
        open_frames(tmp_path, "/entry/data/data")
