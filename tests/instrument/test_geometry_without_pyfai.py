"""PONI reading and q/φ maps without pyFAI give exactly what pyFAI gives.

:meth:`DetectorGeometry.from_poni` reads PONI files of detectors given by their pixels
itself and leaves every other file to pyFAI; the q and φ maps are NumPy versions of
pyFAI's formulas. Checked here: the same fields as through ``pyFAI.load`` for plain files of
every PONI version, the pyFAI route for named detectors, splines and other orientations,
the maps equal to pyFAI's ``center_array`` value for value for tilted and untilted
detectors, the solid-angle and polarisation arrays equal to pyFAI's, and that the plain
route (maps and corrections) imports nothing of pyFAI.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from mc_beamline.instrument.geometry import DetectorGeometry, _plain_poni
from mc_beamline.physics.detector_model import offaxis_geometry

GEOMETRIES = {
    "off-axis": offaxis_geometry(),
    "tilted": dataclasses.replace(offaxis_geometry(), rot1=0.02, rot2=-0.015, rot3=0.3),
    "strongly tilted, rectangular pixels": dataclasses.replace(
        offaxis_geometry(), rot1=-0.1, rot2=0.05, rot3=-1.2, pixel2_m=172e-6, poni2_m=0.05
    ),
    "beam on the detector": DetectorGeometry.from_beam_center((515, 1030), (257.3, 511.8), 0.35, 12.4),
    "beam off the detector": DetectorGeometry.from_beam_center((300, 200), (-40.0, 250.0), 0.1, 8.0),
}


def pyfai_map(geometry: DetectorGeometry, unit: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(geometry.integrator().center_array(geometry.shape, unit=unit), dtype=np.float32)


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_maps_equal_pyfai_center_arrays_value_for_value(geometry):
    q = pyfai_map(geometry, "q_nm^-1")
    phi = pyfai_map(geometry, "chi_deg")
    phi[phi <= -180.0] += 360.0
    assert geometry.q_map.dtype == np.float32 and geometry.q_map.shape == geometry.shape
    assert np.array_equal(geometry.q_map.view(np.uint32), q.view(np.uint32))
    assert np.array_equal(geometry.phi_map.view(np.uint32), phi.view(np.uint32))
    assert not geometry.q_map.flags.writeable and not geometry.phi_map.flags.writeable


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_correction_arrays_equal_pyfai_arrays(geometry):
    """Solid angle to float32 rounding (pyFAI evaluates cos³α in single precision: a few
    units in the last place), polarisation value for value."""
    ai = geometry.integrator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solid = np.asarray(ai.solidAngleArray(geometry.shape, absolute=False), dtype=np.float64)
        pol = {f: ai.polarization(geometry.shape, factor=f, axis_offset=0) for f in (0.99, 0.0, -0.6)}
    assert geometry.solid_angle_map.dtype == np.float32 and not geometry.solid_angle_map.flags.writeable
    np.testing.assert_allclose(geometry.solid_angle_map, solid, rtol=5e-7, atol=0)
    assert solid.min() < 0.999  # the maps are not trivially one
    for factor, expected in pol.items():
        np.testing.assert_allclose(geometry.polarization_map(factor), expected, rtol=2e-7, atol=0,
                                   err_msg=f"factor {factor}")


def pyfai_fields(path) -> dict:
    """What from_poni returned when pyFAI read every file."""
    import pyFAI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ai = pyFAI.load(str(path))
    return {"shape": tuple(ai.detector.max_shape), "pixel1_m": float(ai.detector.pixel1),
            "pixel2_m": float(ai.detector.pixel2), "dist_m": float(ai.dist), "poni1_m": float(ai.poni1),
            "poni2_m": float(ai.poni2), "wavelength_m": float(ai.wavelength), "rot1": float(ai.rot1),
            "rot2": float(ai.rot2), "rot3": float(ai.rot3)}


def poni_text(version: str, detector_lines: str) -> str:
    return (f"# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis\n# Calibration done today\n"
            f"poni_version: {version}\n{detector_lines}Distance: 0.1637\nPoni1: 0.04512\nPoni2: 0.0397\n"
            "Rot1: 0.0123\nRot2: -0.0071\nRot3: 3.1e-05\nWavelength: 1.0332e-10\n")


PLAIN = {
    "2.1": poni_text("2.1", 'Detector: Detector\nDetector_config: {"pixel1": 7.5e-05, "pixel2": 7.5e-05, '
                            '"orientation": 3, "max_shape": [1065, 1030]}\n'),
    "2": poni_text("2", 'Detector: Detector\nDetector_config: {"pixel1": 0.000172, "pixel2": 0.000172, '
                        '"max_shape": [619, 487]}\n'),
    "3": poni_text("3", 'Detector: Detector\nDetector_config: {"pixel1": 5.5e-05, "pixel2": 5.5e-05, '
                        '"orientation": 3, "max_shape": [512, 1024]}\nParallax: False\n'),
}


@pytest.mark.parametrize("version", PLAIN)
def test_plain_poni_files_give_what_pyfai_gives(tmp_path, version):
    path = tmp_path / "det.poni"
    path.write_text(PLAIN[version])
    assert _plain_poni(path, None) is not None  # read without pyFAI
    geometry = DetectorGeometry.from_poni(path)
    assert dataclasses.asdict(geometry) == pyfai_fields(path)


def test_a_written_geometry_reads_back_without_pyfai(tmp_path):
    geometry = GEOMETRIES["strongly tilted, rectangular pixels"]
    path = geometry.write_poni(tmp_path / "det.poni")
    assert _plain_poni(path, None) is not None
    assert DetectorGeometry.from_poni(path) == geometry


def test_version_1_files_take_the_shape_from_the_frames(tmp_path):
    path = tmp_path / "old.poni"
    path.write_text("PixelSize1: 7.5e-05\nPixelSize2: 7.5e-05\nDistance: 0.2\nPoni1: 0.04\nPoni2: 0.03\n"
                    "Rot1: 0\nRot2: 0\nRot3: 0\nWavelength: 1e-10\n")
    geometry = DetectorGeometry.from_poni(path, shape=(100, 120))
    assert _plain_poni(path, (100, 120)) is not None
    fields = dataclasses.asdict(geometry)
    assert fields.pop("shape") == (100, 120)
    import pyFAI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ai = pyFAI.load(str(path))
    assert fields == {"pixel1_m": ai.detector.pixel1, "pixel2_m": ai.detector.pixel2, "dist_m": ai.dist,
                      "poni1_m": ai.poni1, "poni2_m": ai.poni2, "wavelength_m": ai.wavelength,
                      "rot1": ai.rot1, "rot2": ai.rot2, "rot3": ai.rot3}


OTHERS = {
    "named detector": poni_text("2.1", 'Detector: Pilatus1M\nDetector_config: {"orientation": 3}\n'),
    "orientation 2": poni_text("2.1", 'Detector: Detector\nDetector_config: {"pixel1": 7.5e-05, "pixel2": 7.5e-05, '
                                      '"orientation": 2, "max_shape": [200, 300]}\n'),
}


@pytest.mark.parametrize("name", OTHERS)
def test_other_detectors_are_read_by_pyfai(tmp_path, name):
    path = tmp_path / "det.poni"
    path.write_text(OTHERS[name])
    assert _plain_poni(path, None) is None
    assert dataclasses.asdict(DetectorGeometry.from_poni(path)) == pyfai_fields(path)


@pytest.mark.parametrize("broken", [
    ("Distance: 0.1637\n", "Distance: far\n"),
    ("Wavelength: 1.0332e-10\n", ""),
    ("Wavelength: 1.0332e-10\n", "Wavelength: -1e-10\n"),
    ("Distance: 0.1637\n", "Distance: 0\n"),
    ('"max_shape": [1065, 1030]', '"max_shape": null'),
])
def test_files_with_a_bad_value_are_left_to_pyfai(tmp_path, broken):
    path = tmp_path / "det.poni"
    path.write_text(PLAIN["2.1"].replace(*broken))
    assert _plain_poni(path, None) is None


def test_reading_a_plain_file_and_computing_maps_and_corrections_imports_nothing_of_pyfai(tmp_path):
    path = tmp_path / "det.poni"
    path.write_text(PLAIN["2.1"])
    code = ("import sys, json\nfrom mc_beamline.instrument.geometry import DetectorGeometry\n"
            f"g = DetectorGeometry.from_poni({str(path)!r})\n"
            "g.q_map, g.phi_map, g.solid_angle_map, g.polarization_map(0.99)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('pyFAI', 'scipy'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == []
