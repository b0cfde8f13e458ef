"""Frame sources: the frames of one measurement, in whatever files the detector wrote.

:func:`open_frames` opens what a user names as FRAMES and returns a :class:`FrameSource`,
which reads frames in batches (:meth:`FrameSource.read_into`) and carries what the files
say about the detector:

* an HDF5 file with one dataset of frames, (n, rows, columns) or one (rows, columns) frame:
  ``/entry/data/data`` unless ``dataset`` names another (read by
  :class:`~mc_beamline.io.frames.FrameStack`);
* a DECTRIS Eiger (NXmx) master file, ``NAME_master.h5``, recognised by its links
  ``/entry/data/data_000001``, ``data_000002``, ...: HDF5 external links to
  ``/entry/data/data`` of ``NAME_data_000001.h5``, ... (a relative file name is found in
  the master's directory). The linked stacks are read one after the other in the order
  of the links' numbers, each by a FrameStack. The master's header gives the pixel mask
  (``/entry/instrument/detector/detectorSpecific/pixel_mask``, nonzero = bad: gaps,
  dead, hot and noisy pixels) and the geometry (NXmx fields, see
  :meth:`~mc_beamline.instrument.geometry.DetectorGeometry.from_nxmx`);
* a series of CBF, EDF or TIFF images (Pilatus and other detectors), one frame per file,
  read by fabio: a glob pattern, a directory, or a list of files, in natural order of the
  file names (``img_9.cbf`` before ``img_10.cbf``); every image has the shape of the first.

Every problem with the files is an :class:`~mc_beamline.io.inputs.InputError` whose
message is one sentence naming the file.
"""

from __future__ import annotations

import glob
import math
import os
import re
from abc import ABC, abstractmethod
from bisect import bisect_right
from pathlib import Path
from typing import Sequence

import numpy as np

from mc_beamline.analysis.detector.masks import ImageReadError, read_single_image
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.io.frames import DEFAULT_DATASET, FrameStack, frame_dtype_ok
from mc_beamline.io.inputs import InputError, short_reason

IMAGE_SUFFIXES = (".cbf", ".edf", ".tif", ".tiff")
"""File name endings of the images read as a series (by fabio)."""
MASTER_DATA_GROUP = "/entry/data"
MASTER_LINK = re.compile(r"data_(\d+)")
"""Names of the links to the data files in an Eiger master's ``/entry/data`` group."""
DETECTOR_GROUP = "/entry/instrument/detector"
PIXEL_MASK = DETECTOR_GROUP + "/detectorSpecific/pixel_mask"
WAVELENGTH = "/entry/instrument/beam/incident_wavelength"

_LENGTH_M = {
    "m": 1.0, "meter": 1.0, "metre": 1.0, "mm": 1e-3, "millimeter": 1e-3, "millimetre": 1e-3,
    "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "micrometer": 1e-6, "nm": 1e-9, "nanometer": 1e-9,
    "a": 1e-10, "å": 1e-10, "angstrom": 1e-10, "angstroms": 1e-10,
}
"""Length units of NeXus ``units`` attributes, in m."""
_PIXEL_UNITS = ("pixel", "pixels", "px")


class FrameSource(ABC):
    """The frames of one measurement, read in batches.

    Attributes
    ----------
    label : how messages name the frames (a file and dataset, a master file, a series).
    stem : a short name for files made from the frames (figures).
    n_frames : number of frames.
    frame_shape : (rows, columns) of a frame in pixels.
    dtype : numpy dtype of the counts.
    chunk_frames : frames per storage chunk (whole chunks are the cheapest reads).
    pixel_mask : bad pixels the files declare (bool, ``frame_shape``, True = bad), or None.
    header_geometry : detector geometry the files declare, or None.
    header_geometry_problem : why ``header_geometry`` is None (a clause for a message), or None.
    """

    label: str
    stem: str
    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    chunk_frames: int = 1
    pixel_mask: np.ndarray | None = None
    header_geometry: DetectorGeometry | None = None
    header_geometry_problem: str | None = None

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame in memory."""
        return math.prod(self.frame_shape) * self.dtype.itemsize

    @abstractmethod
    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Read frames ``start:stop`` into ``out[: stop - start]`` (C-contiguous, at least
        that many frames of ``frame_shape`` and ``dtype``) and return that view.

        Raises
        ------
        InputError
            If a frame cannot be read, naming its file.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the files."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- HDF5
class Hdf5FrameSource(FrameSource):
    """Frames of one or more HDF5 datasets, one after the other, each read by a FrameStack.

    One file: ``parts`` is [(file, dataset)]. An Eiger master: its linked data files in
    order. One stack is open at a time (a master may link thousands of files).
    ``pixel_mask``: the files' mask (True = bad), of the frames' shape. Whoever opens the
    files sets ``header_geometry`` or ``header_geometry_problem``.

    Raises
    ------
    InputError
        If a part cannot be opened (FrameStack's sentence) or its frames differ in shape
        or dtype from the first part's.
    """

    def __init__(self, parts: Sequence[tuple[Path, str]], label: str, stem: str, *,
                 pixel_mask: np.ndarray | None = None):
        self.parts = [(Path(p), d) for p, d in parts]
        self.label, self.stem = label, stem
        self._open: tuple[int, FrameStack] | None = None
        counts = []
        try:
            for k, (path, dataset) in enumerate(self.parts):
                stack = FrameStack(path, dataset)
                if k == 0:
                    self._open = (0, stack)
                    self.frame_shape, self.dtype = stack.frame_shape, stack.dtype
                    self.chunk_frames = stack.chunk_frames
                else:
                    try:
                        if (stack.frame_shape, stack.dtype) != (self.frame_shape, self.dtype):
                            raise InputError(
                                f"{path}:{dataset} holds {_shape_text(stack.frame_shape)} frames of {stack.dtype}, "
                                f"but {self.parts[0][0]} holds {_shape_text(self.frame_shape)} frames of {self.dtype}."
                            )
                    finally:
                        stack.close()
                counts.append(stack.n_frames)
        except BaseException:
            self.close()
            raise
        self._starts = [0]
        for n in counts[:-1]:
            self._starts.append(self._starts[-1] + n)
        self._counts = counts
        self.n_frames = sum(counts)
        if pixel_mask is not None and pixel_mask.shape != self.frame_shape:
            self.close()
            raise InputError(
                f"The pixel mask {PIXEL_MASK} of {label} is {_shape_text(pixel_mask.shape)} pixels "
                f"but its frames are {_shape_text(self.frame_shape)}."
            )
        self.pixel_mask = pixel_mask

    def _stack(self, k: int) -> FrameStack:
        """The FrameStack of part ``k``, opened now if another part is open."""
        if self._open is not None and self._open[0] == k:
            return self._open[1]
        self.close()
        path, dataset = self.parts[k]
        stack = FrameStack(path, dataset)
        self._open = (k, stack)
        return stack

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        view = out[: stop - start]
        k = bisect_right(self._starts, start) - 1
        pos = start
        while pos < stop:
            first = self._starts[k]
            end = min(stop, first + self._counts[k])
            self._stack(k).read_into(pos - first, end - first, view[pos - start :])
            pos, k = end, k + 1
        return view

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _master_parts(master: Path, f) -> list[tuple[Path, str]]:
    """(file, dataset) of each ``/entry/data/data_NNNNNN`` link of an Eiger master, in link
    order; [] if ``f`` has none. InputError if an externally linked file does not exist."""
    import h5py

    group = f.get(MASTER_DATA_GROUP)
    if not isinstance(group, h5py.Group):
        return []
    links = sorted((int(m.group(1)), name) for name in group if (m := MASTER_LINK.fullmatch(name)))
    parts = []
    for _, name in links:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            target = Path(link.filename)
            if not target.is_absolute():
                target = master.parent / target
            if not target.is_file():
                raise InputError(
                    f"Data file {target} does not exist, but the Eiger master {master} links "
                    f"{MASTER_DATA_GROUP}/{name} to it."
                )
            parts.append((target, link.path))
        elif isinstance(link, h5py.SoftLink):
            parts.append((master, link.path))
        else:
            parts.append((master, f"{MASTER_DATA_GROUP}/{name}"))
    return parts


def _unit(ds) -> str | None:
    """The ``units`` (or ``unit``) attribute of a NeXus field, lower case, or None."""
    for key in ("units", "unit"):
        if key in ds.attrs:
            value = ds.attrs[key]
            value = value.decode() if isinstance(value, bytes) else str(value)
            return value.strip().lower()
    return None


class _NoHeaderGeometry(Exception):
    """Why a master's header gives no geometry (a clause for a message)."""


def _header_number(f, name: str, default_unit: str) -> tuple[float, str]:
    """The scalar field ``name`` of an NXmx header and its unit (lower case)."""
    ds = f.get(name)
    if ds is None or not hasattr(ds, "shape"):
        raise _NoHeaderGeometry(f"{name} is missing")
    values = np.asarray(ds[()]).reshape(-1)
    if values.size != 1 or not np.issubdtype(values.dtype, np.number) or not math.isfinite(float(values[0])):
        raise _NoHeaderGeometry(f"{name} is not one finite number")
    return float(values[0]), _unit(ds) or default_unit


def _header_length_m(f, name: str, default_unit: str) -> float:
    """A positive length of an NXmx header in m."""
    value, unit = _header_number(f, name, default_unit)
    if unit not in _LENGTH_M:
        raise _NoHeaderGeometry(f"{name} has the unknown length unit {unit!r}")
    if value <= 0:
        raise _NoHeaderGeometry(f"{name} is {value:g}, not positive")
    return value * _LENGTH_M[unit]


def _header_center_px(f, name: str, pixel_m: float) -> float:
    """A beam-centre coordinate of an NXmx header in pixels (given in pixels or as a length)."""
    value, unit = _header_number(f, name, "pixel")
    if unit in _PIXEL_UNITS:
        return value
    if unit in _LENGTH_M:
        return value * _LENGTH_M[unit] / pixel_m
    raise _NoHeaderGeometry(f"{name} has the unknown unit {unit!r}")


def _nxmx_geometry(f, shape: tuple[int, int]) -> DetectorGeometry:
    """The untilted detector geometry of an NXmx (Eiger master) header.

    ``f``: the open HDF5 file; ``shape``: (rows, columns) of its frames. Fields (units from
    their ``units`` attribute; without one the Eiger units in brackets): ``beam_center_x``,
    ``beam_center_y`` [pixel] (x: columns, y: rows, from the corner of the first pixel; see
    :meth:`DetectorGeometry.from_nxmx`), ``detector_distance`` [m], ``x_pixel_size``,
    ``y_pixel_size`` [m] in ``/entry/instrument/detector``, and
    ``/entry/instrument/beam/incident_wavelength`` [Å].

    Raises
    ------
    _NoHeaderGeometry
        Naming the first field that is missing or unusable.
    """
    d = DETECTOR_GROUP
    x_pixel_m = _header_length_m(f, f"{d}/x_pixel_size", "m")
    y_pixel_m = _header_length_m(f, f"{d}/y_pixel_size", "m")
    return DetectorGeometry.from_nxmx(
        shape,
        beam_center_xy_px=(_header_center_px(f, f"{d}/beam_center_x", x_pixel_m),
                           _header_center_px(f, f"{d}/beam_center_y", y_pixel_m)),
        distance_m=_header_length_m(f, f"{d}/detector_distance", "m"),
        pixel_xy_m=(x_pixel_m, y_pixel_m),
        wavelength_m=_header_length_m(f, WAVELENGTH, "angstrom"),
    )


def _open_master(path: Path, f, parts: list[tuple[Path, str]]) -> Hdf5FrameSource:
    """The frames of an Eiger master with its header's pixel mask and geometry."""
    mask = f.get(PIXEL_MASK)
    pixel_mask = None if mask is None else np.asarray(mask[()]) != 0
    source = Hdf5FrameSource(parts, label=f"{path} ({len(parts)} data file{'s' if len(parts) != 1 else ''})",
                             stem=path.stem, pixel_mask=pixel_mask)
    try:
        source.header_geometry = _nxmx_geometry(f, source.frame_shape)
    except _NoHeaderGeometry as exc:
        source.header_geometry_problem = f"the header of {path} gives no geometry ({exc})"
    return source


def _open_hdf5(path: Path, dataset: str | None) -> Hdf5FrameSource:
    """One dataset of an HDF5 file, or the linked data of an Eiger master (``dataset`` None)."""
    import h5py

    try:
        is_hdf5 = dataset is None and path.is_file() and h5py.is_hdf5(path)
    except OSError:  # FrameStack below says why it cannot be read
        is_hdf5 = False
    if is_hdf5:
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"Frames file {path} cannot be opened as HDF5 ({short_reason(exc)}).") from None
        with f:
            if f.get(DEFAULT_DATASET, getlink=True) is None:
                parts = _master_parts(path, f)
                if parts:
                    return _open_master(path, f, parts)
    dataset = DEFAULT_DATASET if dataset is None else dataset
    source = Hdf5FrameSource([(path, dataset)], label=f"{path}:{dataset}", stem=path.stem)
    source.header_geometry_problem = f"{path} is not an Eiger/NXmx master file, whose header would give it"
    return source


# --------------------------------------------------------------------- image series
class ImageSeriesSource(FrameSource):
    """CBF, EDF or TIFF images read by fabio, one frame per file, in the order given.

    Opening reads the first image (for the frame shape and dtype); :meth:`read_into`
    checks each image against it.

    Raises
    ------
    InputError
        If the first image does not read or is not a frame of counts.
    """

    def __init__(self, files: Sequence[Path], label: str):
        self.files = [Path(p) for p in files]
        self.label = label
        self.stem = re.sub(r"[_.\-]*\d+$", "", self.files[0].stem) or self.files[0].stem
        self.n_frames = len(self.files)
        self.header_geometry_problem = "the geometry is not read from CBF, EDF or TIFF headers"
        first = self._image(0)
        if first.ndim != 2 or 0 in first.shape:
            raise InputError(f"Image {self.files[0]} has shape {first.shape}, not (rows, columns).")
        if not frame_dtype_ok(first.dtype):
            raise InputError(f"Image {self.files[0]} holds {first.dtype}, not integer or float counts.")
        self.frame_shape = (int(first.shape[0]), int(first.shape[1]))
        self.dtype = first.dtype

    def _image(self, k: int) -> np.ndarray:
        """The data of image ``k``."""
        path = self.files[k]
        try:
            return read_single_image(path)
        except ImageReadError as exc:
            if exc.frames:
                raise InputError(f"Image {path} holds {exc.frames} frames; a series needs one frame per file.") from None
            raise InputError(f"Image {path} cannot be read ({exc}).") from None

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        view = out[: stop - start]
        for k in range(start, stop):
            data = self._image(k)
            if data.shape != self.frame_shape:
                raise InputError(
                    f"Image {self.files[k]} is {_shape_text(data.shape)} pixels, but {self.files[0]} "
                    f"is {_shape_text(self.frame_shape)}."
                )
            try:
                np.copyto(view[k - start], data, casting="safe")
            except TypeError:
                raise InputError(
                    f"Image {self.files[k]} holds {data.dtype}, which does not fit the {self.dtype} "
                    f"of {self.files[0]}."
                ) from None
        return view

    def close(self) -> None:
        """Nothing stays open between reads."""


def natural_key(path: str | os.PathLike) -> list[str | int]:
    """Sort key of a file name in natural order: runs of digits compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _series(files: list[Path], what: str) -> ImageSeriesSource:
    """The image series of ``files`` (``what`` names them in messages)."""
    others = [p for p in files if not _is_image(p)]
    if others:
        raise InputError(
            f"{what} includes {others[0]}, which is not a CBF, EDF or TIFF image; give one HDF5 file or "
            "a series of images."
        )
    files = sorted(files, key=natural_key)
    return ImageSeriesSource(files, label=f"{what} ({len(files)} image{'s' if len(files) != 1 else ''})")


def open_frames(frames: str | os.PathLike | Sequence[str | os.PathLike], dataset: str | None = None) -> FrameSource:
    """Open FRAMES: an HDF5 file, an Eiger master file, or a series of CBF/EDF/TIFF images.

    ``frames``: a file, a directory of images, a glob pattern of images (``"scan/img_*.cbf"``),
    or several image files. ``dataset``: the dataset of frames in an HDF5 file; None means
    ``/entry/data/data``, or the linked data files if the file is an Eiger master.

    Raises
    ------
    InputError
        With one sentence naming the file that cannot be used.
    """
    names = [frames] if isinstance(frames, (str, os.PathLike)) else list(frames)
    if not names:
        raise InputError("No frames given.")
    if len(names) > 1:
        if dataset is not None:
            raise InputError(f"--dataset applies to one HDF5 file, not to {len(names)} files.")
        files = [Path(n) for n in names]
        for p in files:
            if not p.is_file():
                raise InputError(f"Image {p} does not exist.")
        return _series(files, f"{files[0]} … {files[-1]}")
    path = Path(names[0])
    text = os.fspath(names[0])
    pattern = not path.exists() and any(c in text for c in "*?[")
    image_like = path.is_dir() or pattern or (path.is_file() and _is_image(path))
    if image_like and dataset is not None:
        raise InputError(f"--dataset applies to HDF5 files, not to the images {text}.")
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and _is_image(p)]
        if not files:
            raise InputError(f"Directory {path} holds no CBF, EDF or TIFF images.")
        return _series(files, str(path))
    if pattern:
        files = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
        if not files:
            raise InputError(f"No file matches {text}.")
        return _series(files, text)
    if path.is_file() and _is_image(path):
        return _series([path], str(path))
    return _open_hdf5(path, dataset)


__all__ = [
    "FrameSource",
    "Hdf5FrameSource",
    "ImageSeriesSource",
    "IMAGE_SUFFIXES",
    "natural_key",
    "open_frames",
]
