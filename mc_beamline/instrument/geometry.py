"""Detector geometry: pyFAI PONI files to per-pixel q and azimuth maps.

Conventions used everywhere in mc-beamline:

* q is the momentum transfer 4π sin(θ)/λ in nm⁻¹.
* The azimuth φ is pyFAI's χ in degrees, in (-180, 180]: measured from the detector's
  horizontal axis (increasing column index, pyFAI "dim 2"), counter-clockwise towards the
  vertical axis (increasing row index, "dim 1"), i.e. counter-clockwise when the frame is
  drawn with ``origin="lower"``.
* Masks are boolean arrays of the detector shape with ``True`` = bad pixel.

PONI files that carry the detector's pixel sizes themselves (pyFAI's generic "Detector",
as ``pyFAI-calib2`` writes it for a detector given by its pixels) are read directly; any
other (a detector known to pyFAI by name, a spline file, an unusual orientation) and any
file with a missing or unreadable value is read by pyFAI. The q and φ maps are computed
with NumPy from pyFAI's flat-detector formulas (``Geometry.calc_pos_zyx`` and the ``q_nm^-1``
and ``chi_deg`` units), and so are the solid-angle and polarisation arrays
(``solidAngleArray``, ``polarization``); the tests check them against pyFAI's arrays, value
for value. So nothing of pyFAI is imported before the first frame of ``mc-beamline xcca``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

HC_KEV_NM = 1.2398419843320026
"""h·c in keV·nm: wavelength (nm) = HC_KEV_NM / energy (keV)."""


class GeometryError(ValueError):
    """A PONI file or geometry that cannot be used."""


_PONI_ANGLES = ("rot1", "rot2", "rot3")
_PLAIN_DETECTOR_KEYS = {"pixel1", "pixel2", "max_shape", "orientation", "splinefile"}


def _poni_entries(path: Path) -> dict[str, str]:
    """``key: value`` lines of a PONI file as pyFAI's ``PoniFile`` reads them (keys in lower
    case, the last of repeated keys, comment lines and lines without a colon skipped)."""
    entries: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if ":" not in line or line.startswith("#"):
                continue
            key, value = line.split(":", 1)
            entries[key.strip().lower()] = value.strip()
    return entries


def _plain_poni(path: Path, shape: tuple[int, int] | None) -> dict | None:
    """The :class:`DetectorGeometry` fields of a PONI file whose detector is given by its
    pixels (no named detector, no spline, orientation 3), all values present and valid, or
    None: then pyFAI reads it (and reports what is wrong with it)."""
    try:
        config = _poni_entries(path)
        version = float(config.get("poni_version", 1))
        if version > 3:
            return None
        if version >= 2:
            if config.get("detector", "").lower() != "detector" or "detector_config" not in config:
                return None
            det = json.loads(config["detector_config"])
            if not isinstance(det, dict) or not set(det) <= _PLAIN_DETECTOR_KEYS or det.get("splinefile"):
                return None
            if det.get("orientation", 3) not in (0, 3):
                return None
            pixel1, pixel2 = float(det["pixel1"]), float(det["pixel2"])
            max_shape = det.get("max_shape")
        else:
            if "detector" in config or config.get("splinefile", "none").lower() != "none":
                return None
            pixel1, pixel2 = float(config["pixelsize1"]), float(config["pixelsize2"])
            max_shape = None
        det_shape = tuple(int(n) for n in max_shape) if max_shape else shape
        fields = {
            "dist_m": float(config["distance"] if "distance" in config else config["dist"]),
            "poni1_m": float(config["poni1"]),
            "poni2_m": float(config["poni2"]),
            "wavelength_m": float(config["wavelength"]),
            **{name: float(config[name]) for name in _PONI_ANGLES},
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if det_shape is None or len(det_shape) != 2 or min(det_shape) < 1:
        return None
    values = [pixel1, pixel2, *fields.values()]
    if not all(math.isfinite(v) for v in values) or min(pixel1, pixel2, fields["dist_m"], fields["wavelength_m"]) <= 0:
        return None
    return {"shape": (int(det_shape[0]), int(det_shape[1])), "pixel1_m": pixel1, "pixel2_m": pixel2, **fields}



def azimuth_ranges_deg(lo_deg: float, hi_deg: float) -> list[tuple[float, float]]:
    """The azimuth interval [lo, hi] (degrees, lo within 360° below hi, at most one turn out of
    (-180, 180]) as one or two intervals inside [-180, 180], split where it crosses ±180°."""
    if lo_deg < -180.0:
        return [(lo_deg + 360.0, 180.0), (-180.0, hi_deg)]
    if hi_deg > 180.0:
        return [(lo_deg, 180.0), (-180.0, hi_deg - 360.0)]
    return [(lo_deg, hi_deg)]


@dataclass(frozen=True)
class DetectorGeometry:
    """Flat-detector geometry in pyFAI's PONI parametrisation.

    Attributes
    ----------
    shape : (rows, columns) of the detector in pixels.
    pixel_m : pixel size in m (square pixels; ``pixel2_m`` may differ).
    dist_m : sample to point-of-normal-incidence distance in m.
    poni1_m, poni2_m : PONI coordinates along rows and columns in m.
    rot1, rot2, rot3 : pyFAI rotations in radians.
    wavelength_m : X-ray wavelength in m.
    """

    shape: tuple[int, int]
    pixel1_m: float
    pixel2_m: float
    dist_m: float
    poni1_m: float
    poni2_m: float
    wavelength_m: float
    rot1: float = 0.0
    rot2: float = 0.0
    rot3: float = 0.0

    @classmethod
    def from_beam_center(
        cls,
        shape: tuple[int, int],
        center_px: tuple[float, float],
        dist_m: float,
        energy_kev: float,
        pixel_m: float = 75e-6,
    ) -> "DetectorGeometry":
        """Untilted detector with the direct beam at pixel ``center_px`` = (row, column)."""
        wavelength_m = HC_KEV_NM / energy_kev * 1e-9
        return cls(
            shape=(int(shape[0]), int(shape[1])),
            pixel1_m=pixel_m,
            pixel2_m=pixel_m,
            dist_m=dist_m,
            poni1_m=(center_px[0] + 0.5) * pixel_m,
            poni2_m=(center_px[1] + 0.5) * pixel_m,
            wavelength_m=wavelength_m,
        )

    @classmethod
    def from_nxmx(
        cls,
        shape: tuple[int, int],
        beam_center_xy_px: tuple[float, float],
        distance_m: float,
        pixel_xy_m: tuple[float, float],
        wavelength_m: float,
    ) -> "DetectorGeometry":
        """Untilted detector described as in an NXmx (Eiger master) header.

        NXmx and DECTRIS conventions: x is the detector's fast axis, the column index
        (pyFAI "dim 2"), y its slow axis, the row index ("dim 1"). ``beam_center_xy_px`` =
        (``beam_center_x``, ``beam_center_y``) in pixels, counted from the outer corner of
        the first pixel (pixel i spans [i, i + 1), its centre is at i + 0.5): the Fit2D
        ``centerX``/``centerY`` of pyFAI, and what pyFAI's NeXus writer and fabio's
        Eiger-style master writers store. ``pixel_xy_m`` = (``x_pixel_size``,
        ``y_pixel_size``) in m; ``distance_m`` = ``detector_distance``, sample to detector
        along the beam, in m; ``wavelength_m`` in m.
        """
        bx, by = (float(v) for v in beam_center_xy_px)
        px, py = (float(v) for v in pixel_xy_m)
        return cls(
            shape=(int(shape[0]), int(shape[1])),
            pixel1_m=py,
            pixel2_m=px,
            dist_m=float(distance_m),
            poni1_m=by * py,
            poni2_m=bx * px,
            wavelength_m=float(wavelength_m),
        )

    @classmethod
    def from_poni(cls, path: str | Path, shape: tuple[int, int] | None = None) -> "DetectorGeometry":
        """Read a pyFAI PONI file.

        The detector shape comes from the PONI's ``Detector_config`` (``max_shape``) or,
        for detectors that do not store it, from ``shape``.

        Raises
        ------
        GeometryError
            If the file is missing, does not parse, or lacks a wavelength or shape.
        """
        path = Path(path)
        if not path.is_file():
            raise GeometryError(f"PONI file {path} does not exist.")
        plain = _plain_poni(path, shape)
        if plain is not None:
            return cls(**plain)
        try:
            import pyFAI

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ai = pyFAI.load(str(path))
        except Exception as exc:  # pyFAI raises many types for malformed files
            raise GeometryError(f"PONI file {path} does not parse: {exc}") from None
        wavelength = ai.wavelength
        if not wavelength or not math.isfinite(wavelength) or wavelength <= 0:
            raise GeometryError(f"PONI file {path} has no valid wavelength.")
        det_shape = ai.detector.max_shape or shape
        if det_shape is None:
            raise GeometryError(f"PONI file {path} does not give the detector shape (max_shape).")
        if not ai.dist or ai.dist <= 0:
            raise GeometryError(f"PONI file {path} has a non-positive sample-detector distance.")
        return cls(
            shape=(int(det_shape[0]), int(det_shape[1])),
            pixel1_m=float(ai.detector.pixel1),
            pixel2_m=float(ai.detector.pixel2),
            dist_m=float(ai.dist),
            poni1_m=float(ai.poni1),
            poni2_m=float(ai.poni2),
            wavelength_m=float(wavelength),
            rot1=float(ai.rot1),
            rot2=float(ai.rot2),
            rot3=float(ai.rot3),
        )

    @classmethod
    def from_poni_text(cls, text: str) -> "DetectorGeometry":
        """Parse PONI file content (as stored in run metadata)."""
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".poni", delete=False) as fh:
            fh.write(text)
            name = fh.name
        try:
            return cls.from_poni(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def integrator(self):
        """A pyFAI AzimuthalIntegrator for this geometry."""
        from pyFAI.detectors import Detector
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator

        det = Detector(pixel1=self.pixel1_m, pixel2=self.pixel2_m, max_shape=self.shape)
        return AzimuthalIntegrator(
            dist=self.dist_m,
            poni1=self.poni1_m,
            poni2=self.poni2_m,
            rot1=self.rot1,
            rot2=self.rot2,
            rot3=self.rot3,
            detector=det,
            wavelength=self.wavelength_m,
        )

    def to_poni_text(self) -> str:
        """PONI file content (pyFAI format 2.1) for this geometry."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "geometry.poni"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.integrator().save(str(path))
            return path.read_text()

    def write_poni(self, path: str | Path) -> Path:
        """Write this geometry as a PONI file and return its path."""
        path = Path(path)
        path.write_text(self.to_poni_text())
        return path

    @property
    def wavelength_nm(self) -> float:
        return self.wavelength_m * 1e9

    @property
    def beam_center_px(self) -> tuple[float, float]:
        """(row, column) of the point of normal incidence (the direct beam when untilted)."""
        return (self.poni1_m / self.pixel1_m - 0.5, self.poni2_m / self.pixel2_m - 0.5)

    def radius_px(self, q_nm: float) -> float:
        """Ring radius in pixels of momentum transfer ``q_nm`` (nm⁻¹) for an untilted detector."""
        sin_theta = q_nm * self.wavelength_nm / (4 * math.pi)
        if not 0 <= sin_theta < 1:
            raise GeometryError(f"q = {q_nm} nm⁻¹ is beyond the Ewald sphere at this wavelength.")
        two_theta = 2 * math.asin(sin_theta)
        return self.dist_m * math.tan(two_theta) / self.pixel1_m

    def _lab_positions(self, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(t1, t2, t3) in m of the pixel centres of detector ``rows``, float64, as pyFAI's
        ``Geometry.calc_pos_zyx`` computes them for a flat detector of orientation 3: t3 along
        the beam, t1 along the rows, t2 along the columns, after the rotations rot1-rot3."""
        p1 = ((np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5) * self.pixel1_m - self.poni1_m)[:, None]
        p2 = ((np.arange(self.shape[1], dtype=np.float64) + 0.5) * self.pixel2_m - self.poni2_m)[None, :]
        c1, c2, c3 = math.cos(self.rot1), math.cos(self.rot2), math.cos(self.rot3)
        s1, s2, s3 = math.sin(self.rot1), math.sin(self.rot2), math.sin(self.rot3)
        dist = self.dist_m
        t1 = p1 * (c2 * c3) + p2 * (c3 * s1 * s2 - c1 * s3) - dist * (c1 * c3 * s2 + s1 * s3)
        t2 = p1 * (c2 * s3) + p2 * (c1 * c3 + s1 * s2 * s3) - dist * (-c3 * s1 + c1 * s2 * s3)
        t3 = p1 * s2 - p2 * (c2 * s1) + dist * (c1 * c2)
        return t1, t2, t3

    def _row_blocks(self):
        """Slices of detector rows, about 64 k pixels each, so that the float64
        intermediates of the per-pixel maps stay small."""
        step = max(1, 2**16 // max(self.shape[1], 1))
        for r0 in range(0, self.shape[0], step):
            yield slice(r0, min(r0 + step, self.shape[0]))

    @cached_property
    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(q in nm⁻¹, φ in degrees) of each pixel centre, float32, read-only."""
        q = np.empty(self.shape, dtype=np.float32)
        phi = np.empty(self.shape, dtype=np.float32)
        for rows in self._row_blocks():
            t1, t2, t3 = self._lab_positions(rows)
            two_theta = np.arctan2(np.sqrt(t2 * t2 + t1 * t1), t3)
            q[rows] = 4.0e-9 * math.pi * np.sin(two_theta / 2.0) / self.wavelength_m  # pyFAI's eq_q
            phi[rows] = np.rad2deg(np.arctan2(t1, t2))  # pyFAI's eq_chi, in degrees
        phi[phi <= -180.0] += 360.0
        q.setflags(write=False)
        phi.setflags(write=False)
        return q, phi

    @property
    def q_map(self) -> np.ndarray:
        """Momentum transfer of each pixel centre, nm⁻¹, float32, detector shape (read-only)."""
        return self._maps[0]

    @property
    def phi_map(self) -> np.ndarray:
        """Azimuth φ of each pixel centre in degrees, (-180, 180], float32, detector shape (read-only)."""
        return self._maps[1]

    @cached_property
    def solid_angle_map(self) -> np.ndarray:
        """Relative solid angle of each pixel, cos³ of its incidence angle (1 at the PONI),
        float32, detector shape, read-only: pyFAI's ``solidAngleArray`` (``absolute=False``),
        the array pyFAI divides intensities by when it corrects for the solid angle. For a
        flat detector cos α = d / sqrt(d² + p1² + p2²), d the sample-to-plane distance and
        (p1, p2) the pixel centre relative to the PONI in the detector plane."""
        sa = np.empty(self.shape, dtype=np.float32)
        p2 = (np.arange(self.shape[1], dtype=np.float64) + 0.5) * self.pixel2_m - self.poni2_m
        d2 = self.dist_m * self.dist_m
        for rows in self._row_blocks():
            p1 = (np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5) * self.pixel1_m - self.poni1_m
            r2 = d2 + p1[:, None] ** 2 + (p2 * p2)[None, :]
            sa[rows] = (d2 / r2) ** 1.5
        sa.setflags(write=False)
        return sa

    def polarization_map(self, factor: float) -> np.ndarray:
        """Polarisation factor of each pixel for the beam's polarisation ``factor``
        (Ih - Iv)/(Ih + Iv) in [-1, 1] (0: unpolarised, about 0.95–0.99 at undulator
        beamlines, polarisation plane along the detector's columns), float32, detector
        shape: pyFAI's ``polarization(factor=factor, axis_offset=0)``, the array pyFAI
        divides intensities by, P = ½ (1 + cos²2θ − f cos 2χ sin²2θ), χ = φ.

        Raises
        ------
        GeometryError
            If ``factor`` is not a number in [-1, 1].
        """
        factor = float(factor)
        if not -1.0 <= factor <= 1.0:
            raise GeometryError(f"Polarisation factor must be in [-1, 1], got {factor:g}.")
        pol = np.empty(self.shape, dtype=np.float32)
        for rows in self._row_blocks():
            t1, t2, t3 = self._lab_positions(rows)
            cos2_tth = t3 * t3 / (t1 * t1 + t2 * t2 + t3 * t3)
            chi = np.arctan2(t1, t2)
            pol[rows] = 0.5 * (1.0 + cos2_tth - factor * np.cos(2.0 * chi) * (1.0 - cos2_tth))
        return pol

    def q_range(self, mask: np.ndarray | None = None) -> tuple[float, float]:
        """Smallest and largest q (nm⁻¹) on the good pixels."""
        q = self.q_map if mask is None else self.q_map[~mask]
        return float(q.min()), float(q.max())
