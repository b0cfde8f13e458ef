"""Flocculant addition → self-assembly pathway and kinetics (seed 004, phenomenological)."""

import math

import numpy as np
import pytest

from mc_beamline.physics.assembly import AssemblyModel
from mc_beamline.physics.flocculation import (
    C_MIN_MM,
    Flocculation,
    assembly_model,
    concentration_mm,
    truth,
    volume_for,
    well_depth_kt,
)


def addition(final_mm, rate_ul_s):
    return Flocculation(volume_ul=volume_for(final_mm), rate_ul_s=rate_ul_s)


def test_volume_for_inverts_the_dilution():
    for c in (0.0, 10.0, 50.0, 110.0, 400.0):
        v = volume_for(c)
        assert concentration_mm(v) == pytest.approx(c)
        assert Flocculation(volume_ul=v).final_mm == pytest.approx(c)
    assert volume_for(50.0) == pytest.approx(50.0 * 500.0 / 450.0)
    assert volume_for(50.0, colloid_volume_ul=250.0, stock_mm=1000.0) == pytest.approx(50.0 * 250.0 / 950.0)
    for bad in (-1.0, 500.0, 600.0, math.nan):
        with pytest.raises(ValueError):
            volume_for(bad)


def test_seed_004_cases():
    gentle = addition(50.0, 1.0)          # 55.6 µL over 56 s: 0.9 mM/s
    rapid = addition(110.0, 100.0)        # 141 µL in 1.4 s: 78 mM/s
    slow = addition(110.0, 0.5)           # 282 s: 0.39 mM/s
    dispersed = addition(10.0, 1.0)
    assert gentle.pathway == "one-step" and gentle.well_depth_kt == pytest.approx(50 / 15)
    assert rapid.pathway == "two-step" and rapid.ramp_mm_s > 2.0
    assert slow.pathway == "one-step" and slow.ramp_mm_s < 2.0
    assert dispersed.pathway == "none" and math.isinf(dispersed.onset_s)
    assert 3.0 < well_depth_kt(50.0) < 4.0 and well_depth_kt(110.0) > 6.0


def test_pathway_thresholds():
    assert addition(79.0, 100.0).pathway == "one-step"
    assert addition(80.0, 100.0).pathway == "two-step"
    # the ramp rule: 2 mM/s exactly is rapid, slightly slower is not
    v = volume_for(100.0)
    assert Flocculation(volume_ul=v, rate_ul_s=v / 50.0).pathway == "two-step"
    assert Flocculation(volume_ul=v, rate_ul_s=v / 51.0).pathway == "one-step"
    assert addition(19.9, 1.0).pathway == "none" and addition(20.0, 1.0).pathway == "one-step"


def test_onset_is_when_the_concentration_crosses_c_min():
    floc = addition(50.0, 2.0)
    v_star = C_MIN_MM * 500.0 / (500.0 - C_MIN_MM)
    assert floc.onset_s == pytest.approx(v_star / 2.0)
    assert floc.concentration_mm(floc.onset_s) == pytest.approx(C_MIN_MM)
    assert floc.model_time_s(floc.onset_s + 30.0) == pytest.approx(30.0)
    assert floc.addition_time_s == pytest.approx(volume_for(50.0) / 2.0)


def test_concentration_is_continuous_and_rises_to_the_final_value():
    floc = addition(110.0, 10.0)
    t = np.linspace(-5.0, floc.addition_time_s + 5.0, 4001)
    c = np.array([floc.concentration_mm(x) for x in t])
    assert c[0] == 0.0 and c[-1] == pytest.approx(110.0)
    assert np.all(np.diff(c) >= 0)
    assert np.max(np.abs(np.diff(c))) < 110.0 / 4000 * 5  # no jump
    assert floc.concentration_mm(floc.addition_time_s) == pytest.approx(floc.final_mm)


def test_one_step_kinetics_follow_the_quench_depth():
    m50 = assembly_model(addition(50.0, 1.0))
    assert m50.pathway == "one-step" and m50.crystal_final == pytest.approx(0.8)
    assert m50.tau_crystal_s == pytest.approx(150.0) and m50.avrami_n == 2.0
    m30 = assembly_model(addition(30.0, 1.0))
    assert m30.crystal_final == pytest.approx(0.8 * 10 / 30) and m30.tau_crystal_s == pytest.approx(450.0)
    assert assembly_model(addition(21.0, 1.0)).tau_crystal_s == 600.0      # clipped
    assert assembly_model(addition(110.0, 0.5)).tau_crystal_s == 60.0      # deep quench, clipped
    two = assembly_model(addition(110.0, 100.0), lattice="bcc")
    assert (two.pathway, two.dense_final, two.tau_dense_s, two.tau_crystal_s, two.lattice) == (
        "two-step", 0.85, 20.0, 150.0, "bcc")
    none = assembly_model(addition(10.0, 1.0))
    assert none.crystal_final == 0.0
    assert isinstance(assembly_model(addition(50.0, 1.0), gap_nm=0.5), AssemblyModel)


def test_truth_sums_to_one_and_follows_the_pathway():
    cases = [addition(50.0, 1.0), addition(110.0, 100.0), addition(110.0, 0.5), addition(10.0, 1.0)]
    for floc in cases:
        for elapsed in (-10.0, 0.0, 5.0, 30.0, 100.0, 1000.0, 1e5):
            tr = truth(floc, "fcc", elapsed)
            assert set(tr) == {"dilute", "dense", "crystal"}
            assert sum(tr.values()) == pytest.approx(1.0)
            assert all(v >= 0 for v in tr.values())
    # before the onset: pure dilute colloid
    gentle = cases[0]
    assert truth(gentle, "fcc", gentle.onset_s - 1.0) == {"dilute": 1.0, "dense": 0.0, "crystal": 0.0}
    # two-step: the dense fluid comes first; one-step: never a dense fluid
    rapid = truth(cases[1], "fcc", 30.0)
    assert rapid["dense"] > rapid["crystal"] > 0
    assert truth(cases[1], "fcc", 2000.0)["crystal"] == pytest.approx(0.85, abs=1e-3)
    assert truth(cases[0], "fcc", 100.0)["dense"] == 0.0
    assert truth(cases[0], "fcc", 5000.0)["crystal"] == pytest.approx(0.8)
    assert truth(cases[3], "fcc", 1e5) == {"dilute": 1.0, "dense": 0.0, "crystal": 0.0}
    # the same numbers as the model at model time elapsed − onset
    model = assembly_model(cases[0])
    assert truth(cases[0], "fcc", 200.0) == model.truth(200.0 - cases[0].onset_s)


def test_invalid_additions_are_refused():
    for kwargs in ({"rate_ul_s": 0.0}, {"volume_ul": -1.0}, {"stock_mm": 0.0}, {"colloid_volume_ul": math.inf}):
        with pytest.raises(ValueError):
            Flocculation(**kwargs)
