"""The self-assembly cell's ophyd device against the real simulated IOC, and in a Bluesky plan.

The camera's frames are in the HDF5 file its file plugin writes; the events and readings
hold datum ids, which :class:`FrameLocator` (as the live analysis does) turns into frames.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from event_model import DocumentNames, schema_validators

from mc_beamline.callbacks.frame_locator import FrameLocator
from mc_beamline.devices import RESOURCE_SPEC, AssemblyCell
from mc_beamline.devices.assembly_cell import saxs_data_keys
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics.flocculation import Flocculation, truth, volume_for


@pytest.fixture(scope="module")
def cell(beamline):
    c = beamline.assembly
    saved = c.time_scale.get()
    c.time_scale.set(0.01).wait(5)
    c.sample.set("colloid").wait(5)
    c.reset.set(1).wait(5)
    yield c
    if c.floc.dispensing.get(use_monitor=False):
        c.floc.stop_add.set(1).wait(5)
    c.time_scale.set(saved).wait(5)
    c.reset.set(1).wait(5)


def located_frames(asset_docs, key: str, events) -> dict:
    """seq_num -> frame of ``events`` (``seq_num`` and ``data``) whose ``key`` is a datum id of ``asset_docs``."""
    locator = FrameLocator(key)
    try:
        for name, doc in asset_docs:
            assert list(locator(name, doc)) == []
        return {seq_num: frame for event in events for seq_num, frame in locator("event", event)}
    finally:
        locator.close()


def test_cell_is_part_of_the_beamline(beamline):
    cell = beamline["assembly"]
    assert isinstance(cell, AssemblyCell) and cell.name == "assembly" and cell.prefix == "MC:ASSEMBLY:"
    assert cell.connected
    config = cell.read_configuration()
    for key in ("assembly_time_scale", "assembly_sample", "assembly_lattice", "assembly_colloid_volume",
                "assembly_floc_rate", "assembly_floc_volume", "assembly_floc_stock", "assembly_floc_rate_min",
                "assembly_floc_rate_max", "assembly_saxs_acquire_time", "assembly_saxs_poni_text",
                "assembly_saxs_array_size_x", "assembly_saxs_array_size_y"):
        assert key in config
    assert config["assembly_sample"]["value"] in ("colloid", "monolayer", "binary")
    assert config["assembly_floc_stock"]["value"] == 500.0
    assert cell.floc.limits == (0.05, 100.0)


def test_trigger_reads_curve_and_2d_image(cell):
    cell.saxs.acquire_time.set(2.0).wait(5)
    count = cell.saxs.acquire_count.get(use_monitor=False)
    with pytest.raises(RuntimeError, match="not staged"):  # without a capture file the frame would be lost
        cell.saxs.trigger()
    cell.saxs.stage()
    try:
        cell.saxs.trigger().wait(10)
        reading = cell.saxs.read()
        asset_docs = list(cell.saxs.collect_asset_docs())
    finally:
        cell.saxs.unstage()
    keys = saxs_data_keys("assembly")
    assert set(keys.values()) == set(reading)
    assert [name for name, _ in asset_docs] == ["resource", "datum"]
    resource = asset_docs[0][1]
    assert resource["spec"] == RESOURCE_SPEC and resource["resource_kwargs"]["chunk_shape"] == [1, 512, 512]
    assert reading[keys["image"]]["value"] == asset_docs[1][1]["datum_id"]
    assert reading[keys["acquire_count"]]["value"] == count + 1
    assert reading[keys["elapsed"]]["value"] == -1.0
    for field in ("intensity", "sigma", "q"):
        assert reading[keys[field]]["value"].shape == (600,)
    (image,) = located_frames(asset_docs, keys["image"],
                              [{"seq_num": 1, "data": {keys["image"]: reading[keys["image"]]["value"]}}]).values()
    assert image.shape == (512, 512) and image.dtype == np.dtype("int32") and image.dtype.isnative
    desc = cell.saxs.describe()
    assert desc[keys["image"]]["shape"] == [512, 512] and desc[keys["image"]]["dtype"] == "array"
    assert desc[keys["image"]]["dtype_numpy"] == np.dtype(np.int32).str
    assert desc[keys["image"]]["external"] == "FILESTORE:"
    assert desc[keys["intensity"]]["shape"] == [600] and desc[keys["intensity"]]["dtype_numpy"] == "<f8"
    assert cell.saxs.hints["fields"] == [keys["intensity"]]
    geom = cell.saxs.geometry()
    assert isinstance(geom, DetectorGeometry) and geom.shape == image.shape


def test_plan_adds_flocculant_and_records_a_time_series(cell, RE):
    """A plan as the assembly experiment writes it: reset, set the pump, add (put-completion), frames."""
    floc = Flocculation(volume_ul=volume_for(110.0), rate_ul_s=100.0)   # rapid: two-step

    def plan():
        yield from bps.mv(cell.sample, "colloid", cell.lattice, "fcc")
        yield from bps.mv(cell.reset, 1)
        yield from bps.mv(cell.floc.rate, floc.rate_ul_s, cell.floc.volume, floc.volume_ul,
                          cell.saxs.acquire_time, 5.0)

        @bpp.stage_decorator([cell])  # staging the cell stages its camera: a capture file
        @bpp.run_decorator(md={"plan_name": "assembly_test"})
        def inner():
            yield from bps.abs_set(cell.floc.add, 1, group="add")
            yield from bps.wait(group="add")
            for _ in range(3):
                yield from bps.trigger_and_read([cell.saxs, cell])
                yield from bps.sleep(0.1)

        return (yield from inner())

    docs = defaultdict(list)
    RE(plan(), lambda name, doc: docs[name].append(doc))
    for name, items in docs.items():
        for doc in items:
            schema_validators[DocumentNames(name)].validate(doc)
    (descriptor,) = docs["descriptor"]
    keys = saxs_data_keys("assembly")
    assert descriptor["data_keys"][keys["image"]]["shape"] == [512, 512]
    assert "assembly_saxs_poni_text" in descriptor["configuration"]["assembly"]["data"]
    events = docs["event"]
    assert len(events) == 3
    elapsed = [e["data"][keys["elapsed"]] for e in events]
    assert all(b > a for a, b in zip(elapsed, elapsed[1:])) and elapsed[0] > 0
    assert events[0]["data"]["assembly_floc_dispensed"] == pytest.approx(floc.volume_ul)
    assert events[0]["data"]["assembly_concentration"] == pytest.approx(110.0)
    assert all(isinstance(e["data"][keys["image"]], str) for e in events)  # datum ids: the frames are in the file
    asset_docs = [(name, doc) for name in ("resource", "datum") for doc in docs[name]]
    assert len(docs["resource"]) == 1 and len(docs["datum"]) == 3
    frames = located_frames(asset_docs, keys["image"], events)
    assert sorted(frames) == [1, 2, 3]
    assert np.asarray(frames[1]).shape == (512, 512)
    tr = truth(floc, "fcc", elapsed[-1])
    assert tr["dense"] > 0.05  # the dense fluid of the two-step pathway is there
