"""wrap90/wrap180 of one angle (Python arithmetic) equal the array path bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mc_beamline.analysis.xcca.structure import wrap90, wrap180

EDGES = [0.0, -0.0, 1e-300, -1e-300, 89.99999999999999, 90.0, -90.0, 180.0, -180.0, 270.0, -270.0, 360.0,
         -359.99999999999994, 1e300, -1e300, 5, -95, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("wrap", [wrap90, wrap180])
def test_one_angle_wraps_as_an_array_of_angles_does(wrap):
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(-1e4, 1e4, 20000), rng.uniform(-400.0, 400.0, 20000),
                             np.arange(-720.0, 720.5, 0.5), np.array(EDGES, dtype=np.float64)])
    with np.errstate(invalid="ignore"):
        expected = wrap(values)
    for scalar in (*EDGES, *values[:2000], *values[-1500:]):
        for one in (scalar, np.float64(scalar)):
            got = wrap(one)
            assert type(got) is float
            want = expected[np.flatnonzero((values == scalar) | (np.isnan(values) & np.isnan(scalar)))[0]]
            assert np.float64(got).tobytes() == np.float64(want).tobytes() or (math.isnan(got) and math.isnan(want))
