"""Detector geometry: pyFAI PONI files to per-pixel q and azimuth maps.

Conventions used everywhere in mc-beamline:

* q is the momentum transfer 4π sin(θ)/λ in nm⁻¹.
* The azimuth φ is pyFAI's χ in degrees, in (-180, 180]: measured from the detector's
  horizontal axis (increasing column index, pyFAI "dim 2"), counter-clockwise towards the
  vertical axis (increasing row index, "dim 1"), i.e. counter-clockwise when the frame is
  drawn with ``origin="lower"``.
* Masks are boolean arrays of the detector shape with ``True`` = bad pixel.
"""

from __future__ import annotations

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

    def _center_array(self, unit: str) -> np.ndarray:
        """pyFAI's value of ``unit`` at each pixel centre, float32, C-contiguous, detector shape."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = self.integrator().center_array(self.shape, unit=unit)
        return np.ascontiguousarray(values, dtype=np.float32)

    @cached_property
    def q_map(self) -> np.ndarray:
        """Momentum transfer of each pixel centre, nm⁻¹, float32, detector shape."""
        q = self._center_array("q_nm^-1")
        q.setflags(write=False)
        return q

    @cached_property
    def phi_map(self) -> np.ndarray:
        """Azimuth φ of each pixel centre in degrees, (-180, 180], float32, detector shape."""
        phi = self._center_array("chi_deg")
        phi[phi <= -180.0] += 360.0
        phi.setflags(write=False)
        return phi

    @cached_property
    def solid_angle_map(self) -> np.ndarray:
        """Relative solid angle of each pixel, cos³ of its incidence angle (1 at the PONI),
        float32, detector shape: pyFAI's ``solidAngleArray`` (``absolute=False``), the array
        pyFAI divides intensities by when it corrects for the solid angle."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = self.integrator().solidAngleArray(self.shape, absolute=False)
        sa = np.ascontiguousarray(values, dtype=np.float32)
        sa.setflags(write=False)
        return sa

    def polarization_map(self, factor: float) -> np.ndarray:
        """Polarisation factor of each pixel for the beam's polarisation ``factor``
        (Ih - Iv)/(Ih + Iv) in [-1, 1] (0: unpolarised, about 0.95–0.99 at undulator
        beamlines, polarisation plane along the detector's columns), float32, detector
        shape: pyFAI's ``polarization(factor=factor, axis_offset=0)``, the array pyFAI
        divides intensities by.

        Raises
        ------
        GeometryError
            If ``factor`` is not a number in [-1, 1].
        """
        factor = float(factor)
        if not -1.0 <= factor <= 1.0:
            raise GeometryError(f"Polarisation factor must be in [-1, 1], got {factor:g}.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = self.integrator().polarization(self.shape, factor=factor, axis_offset=0)
        return np.ascontiguousarray(values, dtype=np.float32)

    def q_range(self, mask: np.ndarray | None = None) -> tuple[float, float]:
        """Smallest and largest q (nm⁻¹) on the good pixels."""
        q = self.q_map if mask is None else self.q_map[~mask]
        return float(q.min()), float(q.max())
