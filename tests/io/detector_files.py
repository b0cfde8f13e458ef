"""Detector files as they come back from a beamtime, written for the tests.

:func:`write_eiger` writes what a DECTRIS Eiger writes: ``NAME_master.h5`` whose
``/entry/data/data_000001``, ... are external links to ``/entry/data/data`` of
``NAME_data_000001.h5``, ... (one Bitshuffle/LZ4 chunk per frame), with the NXmx header
(beam centre in pixels, distance, pixel sizes, wavelength in Å) and the pixel mask.
:func:`write_series` writes one fabio image (CBF, EDF or TIFF) per frame.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from mc_beamline.instrument.geometry import DetectorGeometry


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _field(group: h5py.Group, name: str, value, units: str | None) -> None:
    ds = group.create_dataset(name, data=value)
    if units is not None:
        ds.attrs["units"] = units


def nxmx_header(geometry: DetectorGeometry) -> dict[str, tuple[float, str]]:
    """The NXmx header fields of an untilted ``geometry``, in the Eiger's units: beam centre
    in pixels from the first pixel's corner (x: columns), lengths in m, wavelength in Å."""
    return {
        "beam_center_x": (geometry.poni2_m / geometry.pixel2_m, "pixel"),
        "beam_center_y": (geometry.poni1_m / geometry.pixel1_m, "pixel"),
        "detector_distance": (geometry.dist_m, "m"),
        "x_pixel_size": (geometry.pixel2_m, "m"),
        "y_pixel_size": (geometry.pixel1_m, "m"),
        "incident_wavelength": (geometry.wavelength_m * 1e10, "angstrom"),
    }


def write_eiger(directory: Path, name: str, frames: np.ndarray, per_file: int, *,
                header: dict[str, tuple[float, str | None]] | None = None,
                pixel_mask: np.ndarray | None = None) -> Path:
    """Write ``frames`` (n, rows, columns) as an Eiger master and data files of ``per_file``
    frames; returns the master's path. ``header``: NXmx fields (value, units) as from
    :func:`nxmx_header`; ``pixel_mask``: the detector's mask (uint32, nonzero = bad)."""
    directory = Path(directory)
    master = directory / f"{name}_master.h5"
    with h5py.File(master, "w") as f:
        entry = _group(f, "entry", "NXentry")
        data = _group(entry, "data", "NXdata")
        starts = list(range(0, len(frames), per_file))
        for k, start in reversed(list(enumerate(starts, 1))):  # links made out of order: the order is their number
            block = frames[start : start + per_file]
            data_file = f"{name}_data_{k:06d}.h5"
            with h5py.File(directory / data_file, "w") as g:
                ds = _group(_group(g, "entry", "NXentry"), "data", "NXdata").create_dataset(
                    "data", data=block, chunks=(1, *block.shape[1:]), **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
                ds.attrs["image_nr_low"] = start + 1
                ds.attrs["image_nr_high"] = start + len(block)
            data[f"data_{k:06d}"] = h5py.ExternalLink(data_file, "/entry/data/data")
        instrument = _group(entry, "instrument", "NXinstrument")
        detector = _group(instrument, "detector", "NXdetector")
        specific = _group(detector, "detectorSpecific", "NXcollection")
        specific.create_dataset("nimages", data=len(frames))
        if pixel_mask is not None:
            specific.create_dataset("pixel_mask", data=pixel_mask.astype(np.uint32), compression="gzip")
        for key, (value, units) in (header or {}).items():
            group = _group(instrument, "beam", "NXbeam") if key == "incident_wavelength" else detector
            _field(group, key, value, units)
    return master


def write_series(directory: Path, frames: np.ndarray, fmt: str, prefix: str = "img_",
                 first: int = 1, digits: int = 5) -> list[Path]:
    """One image per frame, ``prefix`` + frame number + ``.cbf``/``.edf``/``.tif`` (``fmt``),
    written by fabio; numbers from ``first``, zero-padded to ``digits``."""
    from fabio.cbfimage import CbfImage
    from fabio.edfimage import EdfImage
    from fabio.tifimage import TifImage

    image_class = {"cbf": CbfImage, "edf": EdfImage, "tif": TifImage}[fmt]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = directory / f"{prefix}{first + i:0{digits}d}.{fmt}"
        image_class(data=np.ascontiguousarray(frame)).write(str(path))
        paths.append(path)
    return paths


def random_frames(n: int, shape: tuple[int, int], dtype, seed: int = 0, mean: float = 0.3) -> np.ndarray:
    """Sparse Eiger-like counts (Poisson, ``mean`` per pixel) with a gap column of 2³²-1, a few
    large values, and -1 or NaN where ``dtype`` holds them."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    frames = rng.poisson(mean, (n, *shape)).astype(np.float64)
    frames[:, :, shape[1] // 3] = 2**32 - 1  # a gap column
    frames[rng.random(frames.shape) < 0.01] = rng.integers(0, 2**31, 1)[0]
    if dt.kind in "ui":
        frames = np.minimum(frames, np.iinfo(dt).max)
    if dt.kind == "i":
        frames[rng.random(frames.shape) < 0.01] = -1
    out = frames.astype(dt)
    if dt.kind == "f":
        out[rng.random(frames.shape) < 0.01] = np.nan
    return out
