"""PONI geometry: round trip, conventions, and clear errors."""

import numpy as np
import pytest

from mc_beamline.instrument.geometry import DetectorGeometry, GeometryError
from mc_beamline.physics.detector_model import offaxis_geometry


def test_poni_round_trip_keeps_the_maps(tmp_path):
    geom = offaxis_geometry()
    path = geom.write_poni(tmp_path / "det.poni")
    again = DetectorGeometry.from_poni(path)
    assert again.shape == geom.shape
    assert again.dist_m == pytest.approx(geom.dist_m)
    assert again.wavelength_m == pytest.approx(geom.wavelength_m)
    np.testing.assert_allclose(again.q_map, geom.q_map, rtol=1e-6)
    assert DetectorGeometry.from_poni_text(geom.to_poni_text()).shape == geom.shape


def test_azimuth_convention_is_counter_clockwise_from_columns_to_rows():
    geom = offaxis_geometry()
    r0, c0 = (int(v) for v in geom.beam_center_px)
    assert geom.phi_map[r0, c0 + 300] == pytest.approx(0.0, abs=0.2)
    assert geom.phi_map[r0 + 300, c0] == pytest.approx(90.0, abs=0.2)
    assert geom.phi_map.max() <= 180.0 and geom.phi_map.min() > -180.0


def test_ring_radius_matches_the_q_map():
    geom = offaxis_geometry()
    r0, c0 = (int(v) for v in geom.beam_center_px)
    radius = geom.radius_px(18.3)
    assert geom.q_map[r0, c0 + int(round(radius))] == pytest.approx(18.3, abs=0.03)


@pytest.mark.parametrize(
    "content, message",
    [
        ("this is not a poni file\n", "does not parse|wavelength|shape|distance"),
        ("poni_version: 2\nDetector: Detector\nDistance: 0.1\nPoni1: 0\nPoni2: 0\nRot1: 0\nRot2: 0\nRot3: 0\n", "wavelength|shape"),
    ],
)
def test_bad_poni_files_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.poni"
    path.write_text(content)
    with pytest.raises(GeometryError, match=message):
        DetectorGeometry.from_poni(path)


def test_missing_poni_file(tmp_path):
    with pytest.raises(GeometryError, match="does not exist"):
        DetectorGeometry.from_poni(tmp_path / "nope.poni")


def test_azimuth_ranges_split_at_the_seam():
    from mc_beamline.instrument.geometry import azimuth_ranges_deg

    assert azimuth_ranges_deg(-10.0, 20.0) == [(-10.0, 20.0)]
    assert azimuth_ranges_deg(-190.0, -170.0) == [(170.0, 180.0), (-180.0, -170.0)]
    assert azimuth_ranges_deg(170.0, 185.0) == [(170.0, 180.0), (-180.0, -175.0)]
