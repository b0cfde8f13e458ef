"""The seed raster's XCCA tolerances (SCIENCE.md), shared by the step and the fly raster demos."""

from __future__ import annotations


def assert_recovers_the_seed_truth(demo: dict) -> None:
    """``demo``: the JSON a seed-raster demo child prints (``result``, ``truth``, ``summary``,
    ``n_points``, ``errors``, ``uid``). The live result must recover the simulator's truth:
    bct, c/a within 0.02, ΔΦ within 2°, ψ std within 1°, grains within 20 %."""
    result, truth, summary = demo["result"], demo["truth"], demo["summary"]
    assert demo["n_points"] == 35 * 51
    assert demo["errors"] == [], summary
    assert result["n_frames"] == 35 * 51
    assert result["superlattice"]["lattice"] == "bct"
    assert abs(result["superlattice"]["c_over_a"] - truth["c_over_a"]) <= 0.02, summary
    assert abs(result["orientational_disorder_fwhm_deg"] - truth["disorder_fwhm_deg"]) <= 2.0, summary
    assert abs(result["misorientation_deg"]["std"] - truth["psi_std_deg"]) <= 1.0, summary
    assert abs(result["domains"]["count"] - truth["grains"]) <= 0.2 * truth["grains"], summary
    assert f"uid: {demo['uid']}" in summary
