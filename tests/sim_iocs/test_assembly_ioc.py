"""The simulated self-assembly cell over Channel Access: flocculant pump, sample, SAXS camera."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import RingPolarOperator
from mc_beamline.analysis.saxs.symmetry import ring_symmetry
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.io.frames import BITSHUFFLE_FILTER_ID, read_frame
from mc_beamline.physics.assembly import default_q_nm
from mc_beamline.physics.assembly_cell import (
    BINARY_Q0_NM,
    MONOLAYER_TRANSITION_S,
    CellSimulator,
    CellState,
    camera_geometry,
)
from mc_beamline.physics.flocculation import (
    Flocculation,
    assembly_model,
    concentration_mm,
    volume_for,
)
from mc_beamline.physics.superlattice_patterns import HexToSquareTransition

P = "MC:ASSEMBLY:"
FAST = 0.01
"""Wall-clock seconds per simulated second in these tests (100x faster than real time)."""


# ----------------------------------------------------------------------------- helpers
class Cell:
    """Plain caproto access to the cell's PVs (names relative to ``MC:ASSEMBLY:``)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._pvs = {}

    def pv(self, name):
        if name not in self._pvs:
            pv, = self.ctx.get_pvs(P + name, timeout=5)
            pv.wait_for_connection(timeout=10)
            self._pvs[name] = pv
        return self._pvs[name]

    def get(self, name):
        data = self.pv(name).read(timeout=5).data
        if isinstance(data, np.ndarray) and data.dtype == np.uint8:
            return data.tobytes().split(b"\0")[0].decode()
        if data.size == 1:
            value = data[0]
            return value.decode() if isinstance(value, bytes) else value
        return data

    def put(self, name, value, wait=True, callback=None):
        from caproto import ChannelType

        if isinstance(value, str):  # an enum state by name
            return self.pv(name).write([value.encode()], data_type=ChannelType.STRING, wait=wait,
                                       callback=callback, timeout=30)
        return self.pv(name).write([value], wait=wait, callback=callback, timeout=30)

    def enum(self, name):
        from caproto import ChannelType

        return self.pv(name).read(data_type=ChannelType.STRING, timeout=5).data[0].decode()

    def wait_until(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.005)
        return False

    def fresh(self, sample="colloid"):
        self.put("Sample", sample)
        self.put("Reset", 1)
        assert self.enum("Sample") == sample
        assert self.get("FLOC:Dispensed_RBV") == 0.0 and self.get("Elapsed_RBV") == -1.0

    def add(self, rate, volume):
        self.put("FLOC:Rate", rate)
        self.put("FLOC:Volume", volume)
        t0 = time.monotonic()
        self.put("FLOC:Add", 1)
        return time.monotonic() - t0

    def wait_elapsed(self, seconds, timeout=10.0):
        assert self.wait_until(lambda: self.get("Elapsed_RBV") >= seconds, timeout)

    def acquire(self, exposure_s):
        self.put("SAXS:AcquireTime", exposure_s)
        count = self.get("SAXS:AcquireCount_RBV")
        self.put("SAXS:Acquire", 1)
        assert self.get("SAXS:AcquireCount_RBV") == count + 1, self.get("SAXS:Status_RBV")
        rows, cols = self.get("SAXS:ArraySizeY_RBV"), self.get("SAXS:ArraySizeX_RBV")
        return {"elapsed": self.get("SAXS:Elapsed_RBV"), "q": self.get("SAXS:Q_RBV"),
                "intensity": self.get("SAXS:Intensity_RBV"), "sigma": self.get("SAXS:Sigma_RBV"),
                "image": self.get("SAXS:Image_RBV").reshape(rows, cols)}  # big-endian int32 from caproto


@pytest.fixture(scope="module")
def cell(ca_context):
    c = Cell(ca_context)
    c.put("TimeScale", FAST)
    c.put("Lattice", "fcc")
    yield c
    if c.get("FLOC:Dispensing_RBV"):
        c.put("FLOC:Stop", 1)
    c.put("TimeScale", 1.0)
    c.put("Sample", "colloid")
    c.put("Reset", 1)


@pytest.fixture(scope="module")
def geometry(cell):
    return DetectorGeometry.from_poni_text(cell.get("SAXS:PoniText_RBV"))


def chi2(curve, model):
    return float(np.mean(((curve["intensity"] - model) / curve["sigma"]) ** 2))


def ring_order(geometry, image, q_nm, half_width=0.03):
    op = RingPolarOperator(geometry, [(q_nm, half_width)], n_bins=360)
    prof = op.regroup(image.astype(np.int32))  # native byte order for the compiled regrouping
    return ring_symmetry(prof.mean[0], prof.weight[0]), prof.mean[0]


# --------------------------------------------------------------------------------- PVs
def test_all_pvs_are_served(cell):
    names = ["TimeScale", "SimTime_RBV", "Sample", "Lattice", "Reset", "ColloidVolume_RBV", "Concentration_RBV",
             "Elapsed_RBV", "Status_RBV", "SimSeed_RBV"]
    names += ["FLOC:" + n for n in ("Rate", "Rate_RBV", "Volume", "Volume_RBV", "Add", "Stop", "Dispensing_RBV",
                                    "Dispensed_RBV", "Stock_RBV", "RateMin_RBV", "RateMax_RBV")]
    names += ["SAXS:" + n for n in ("AcquireTime", "AcquireTime_RBV", "Acquire", "AcquireCount_RBV", "Elapsed_RBV",
                                    "Q_RBV", "Intensity_RBV", "Sigma_RBV", "Image_RBV", "ArraySizeX_RBV",
                                    "ArraySizeY_RBV", "PoniText_RBV", "Status_RBV")]
    for name in names:
        cell.pv(name)
    assert cell.get("ColloidVolume_RBV") == 500.0 and cell.get("FLOC:Stock_RBV") == 500.0
    assert (cell.get("FLOC:RateMin_RBV"), cell.get("FLOC:RateMax_RBV")) == (0.05, 100.0)
    assert np.allclose(cell.get("SAXS:Q_RBV"), default_q_nm())
    assert (cell.get("SAXS:ArraySizeY_RBV"), cell.get("SAXS:ArraySizeX_RBV")) == (512, 512)
    t0 = cell.get("SimTime_RBV")
    assert cell.wait_until(lambda: cell.get("SimTime_RBV") > t0 + 1.0, 2.0)  # 100 simulated s per s


def test_set_points_refuse_bad_values(cell):
    cell.put("FLOC:Rate", 2.0)
    for bad in (0.01, 200.0):
        cell.put("FLOC:Rate", bad)
        assert cell.get("FLOC:Rate_RBV") == 2.0
    cell.put("FLOC:Volume", 40.0)
    for bad in (0.0, -5.0, 1500.0):
        cell.put("FLOC:Volume", bad)
        assert cell.get("FLOC:Volume_RBV") == 40.0
    cell.put("TimeScale", 0.0)
    assert cell.get("TimeScale") == FAST


def test_geometry_from_the_poni_text_is_the_cameras(geometry):
    ref = camera_geometry()
    assert geometry.shape == (512, 512)
    assert np.array_equal(geometry.q_map, ref.q_map) and np.array_equal(geometry.phi_map, ref.phi_map)
    # the superlattice rings lie well inside the frame
    assert geometry.radius_px(BINARY_Q0_NM) > 60 and geometry.radius_px(0.97) < 250
    assert geometry.q_range()[1] == pytest.approx(2.836, abs=0.01)


# ----------------------------------------------------------------------------- addition
def test_addition_completes_when_dispensed_and_refuses_a_second_one(cell):
    cell.fresh("colloid")
    volume = volume_for(50.0)          # 55.6 µL at 1 µL/s: 55.6 simulated s, 0.56 s wall
    cell.put("FLOC:Rate", 1.0)
    cell.put("FLOC:Volume", volume)
    done = threading.Event()
    t0 = time.monotonic()
    cell.put("FLOC:Add", 1, wait=False, callback=lambda *a: done.set())
    assert cell.wait_until(lambda: cell.get("FLOC:Dispensing_RBV") == 1, 2.0)
    assert not done.is_set()
    # while adding: a second Add, Sample, Lattice and Reset are refused at once
    t1 = time.monotonic()
    cell.put("FLOC:Add", 1)
    assert time.monotonic() - t1 < 0.2 and "addition is running" in cell.get("Status_RBV")
    cell.put("Sample", "monolayer")
    assert cell.enum("Sample") == "colloid" and "refused" in cell.get("Status_RBV")
    cell.put("Lattice", "bcc")
    assert cell.enum("Lattice") == "fcc"
    cell.put("Reset", 1)
    assert cell.get("FLOC:Dispensing_RBV") == 1 and "Reset refused" in cell.get("Status_RBV")
    assert cell.wait_until(lambda: cell.get("Concentration_RBV") > 0.0, 1.0)  # rises while adding
    assert cell.get("Concentration_RBV") < 50.0
    assert done.wait(5.0)
    wall = time.monotonic() - t0
    assert 0.9 * volume * FAST < wall < volume * FAST + 0.5
    assert cell.get("FLOC:Dispensing_RBV") == 0 and cell.enum("FLOC:Add") == "Done"
    assert cell.get("FLOC:Dispensed_RBV") == pytest.approx(volume, rel=1e-12)
    assert cell.get("Concentration_RBV") == pytest.approx(50.0, rel=1e-9)
    assert cell.get("Elapsed_RBV") >= volume
    # one addition per sample
    cell.put("FLOC:Add", 1)
    assert "Reset" in cell.get("Status_RBV") and cell.get("FLOC:Dispensed_RBV") == pytest.approx(volume)
    cell.put("Reset", 1)
    assert cell.get("Concentration_RBV") == 0.0 and cell.get("Elapsed_RBV") == -1.0


def test_stop_ends_the_addition_with_the_volume_added(cell):
    cell.fresh("colloid")
    cell.put("FLOC:Rate", 1.0)
    cell.put("FLOC:Volume", 500.0)     # 500 simulated s: 5 s wall
    done = threading.Event()
    t0 = time.monotonic()
    cell.put("FLOC:Add", 1, wait=False, callback=lambda *a: done.set())
    time.sleep(0.25)
    cell.put("FLOC:Stop", 1)
    wall = time.monotonic() - t0
    assert done.wait(1.0)
    added = cell.get("FLOC:Dispensed_RBV")
    assert 0.5 * 0.25 / FAST < added < 1.5 * wall / FAST < 500.0  # ~25 µL at 1 µL/s
    assert cell.get("FLOC:Dispensing_RBV") == 0 and not cell.get("FLOC:Add")
    assert cell.get("Concentration_RBV") == pytest.approx(concentration_mm(added), rel=1e-9)
    assert "ended" in cell.get("Status_RBV")
    elapsed = cell.get("Elapsed_RBV")
    assert cell.wait_until(lambda: cell.get("Elapsed_RBV") > elapsed + 5.0, 2.0)  # the clock runs on
    assert cell.get("FLOC:Dispensed_RBV") == added
    cell.put("Reset", 1)


# ----------------------------------------------------------------------------- SAXS: colloid
@pytest.mark.parametrize("final_mm, rate, pathway, wait_s", [
    (50.0, 1.0, "one-step", 200.0),     # gentle: 55.6 µL over 56 s
    (110.0, 100.0, "two-step", 30.0),  # rapid: 141 µL in 1.4 s
])
def test_colloid_curve_follows_the_flocculation_model(cell, geometry, final_mm, rate, pathway, wait_s):
    cell.fresh("colloid")
    before = cell.acquire(10.0)
    assert before["elapsed"] == -1.0
    dilute = assembly_model(Flocculation(volume_ul=0.0)).curve(-1.0, before["q"])
    assert chi2(before, dilute) == pytest.approx(1.0, abs=0.25)

    floc = Flocculation(volume_ul=volume_for(final_mm), rate_ul_s=rate)
    assert floc.pathway == pathway
    cell.add(rate, floc.volume_ul)
    assert cell.get("Concentration_RBV") == pytest.approx(final_mm, rel=1e-9)
    cell.wait_elapsed(wait_s)
    frame = cell.acquire(10.0)
    t = frame["elapsed"]
    assert wait_s + 5.0 <= t < wait_s + 5.0 + 100.0
    model = assembly_model(floc, "fcc")
    assert chi2(frame, model.curve(floc.model_time_s(t), frame["q"])) == pytest.approx(1.0, abs=0.25)
    # the other pathway at the same time does not fit
    other = Flocculation(volume_ul=volume_for(110.0), rate_ul_s=100.0 if pathway == "one-step" else 0.5)
    assert other.pathway != pathway
    assert chi2(frame, assembly_model(other, "fcc").curve(other.model_time_s(t), frame["q"])) > 10.0
    # the image: Poisson counts of the model I(q) on the q map of the PONI
    image = frame["image"]
    assert image.shape == (512, 512) and image.dtype.kind == "i" and image.dtype.itemsize == 4
    expected = CellSimulator(cell.get("SAXS:PoniText_RBV")).expected_image(
        CellState("colloid", "fcc", floc, t), 10.0)
    assert float(np.mean((image - expected) ** 2 / expected)) == pytest.approx(1.0, abs=0.05)


# ----------------------------------------------------------------------------- SAXS: patterns
def test_monolayer_ring_turns_from_six_to_four_fold(cell, geometry):
    transition = HexToSquareTransition(t_transition_s=MONOLAYER_TRANSITION_S)
    cell.fresh("monolayer")
    cell.put("TimeScale", 0.1)
    try:
        before = cell.acquire(1.0)
        sym, prof_before = ring_order(geometry, before["image"], transition.first_ring_nm(-1000.0))
        assert sym.order == 6
        cell.add(100.0, 10.0)
        early = cell.acquire(1.0)
        assert 0.0 < early["elapsed"] < 5.0 <= MONOLAYER_TRANSITION_S / 5
        sym, prof_early = ring_order(geometry, early["image"], transition.first_ring_nm(early["elapsed"]))
        assert sym.order == 6
        # one domain in the beam: the spots stay where they were
        assert np.corrcoef(prof_before, prof_early)[0, 1] > 0.9
        cell.put("TimeScale", FAST)
        cell.wait_elapsed(80.0)
        late = cell.acquire(1.0)
        assert late["elapsed"] > 80.0
        sym, _ = ring_order(geometry, late["image"], transition.first_ring_nm(late["elapsed"]))
        assert sym.order == 4
        # the 1D reduction is the azimuthal mean of the same pattern
        state = CellState("monolayer", flocculation=Flocculation(volume_ul=10.0, rate_ul_s=100.0),
                          elapsed_s=late["elapsed"])
        assert chi2(late, CellSimulator(cell.get("SAXS:PoniText_RBV")).expected_curve(state)) == pytest.approx(
            1.0, abs=0.25)
    finally:
        cell.put("TimeScale", FAST)


def test_binary_mixture_orders_into_a_twelve_fold_quasicrystal(cell, geometry):
    cell.fresh("binary")
    before = cell.acquire(1.0)
    sym_before, _ = ring_order(geometry, before["image"], BINARY_Q0_NM)
    assert sym_before.order == 0  # the isotropic ring of the disordered mixture
    cell.add(100.0, 20.0)
    cell.wait_elapsed(150.0)
    after = cell.acquire(1.0)
    sym_after, _ = ring_order(geometry, after["image"], BINARY_Q0_NM)
    assert sym_after.order == 12
    assert sym_after.component(12) > 100 * max(sym_before.component(12), sym_before.noise_floor)


# ----------------------------------------------------------------------------- SAXS: files
def put_text(cell, name, text):
    """Put ``text`` to a char-waveform PV (NUL-terminated, as areaDetector clients do)."""
    cell.pv(name).write(text.encode() + b"\0", wait=True, timeout=10)


def test_camera_writes_captured_frames_to_its_hdf5_file(cell, sim_ioc):
    cell.fresh("colloid")
    root = Path(cell.get("SAXS:DataDir_RBV"))
    assert root == sim_ioc.data_dir.resolve() / "detector"
    try:
        # a directory outside the data directory is refused
        put_text(cell, "SAXS:FilePath", "../elsewhere")
        assert cell.get("SAXS:FilePathExists_RBV") == 0
        cell.put("SAXS:Capture", 1)
        assert cell.enum("SAXS:Capture_RBV") == "Done" and "outside" in cell.get("SAXS:Status_RBV")
        assert not (root.parent / "elsewhere").exists()

        put_text(cell, "SAXS:FilePath", "ioc-tests")
        put_text(cell, "SAXS:FileName", "saxs")
        number = cell.get("SAXS:FileNumber")
        cell.put("SAXS:Capture", 1)
        assert cell.enum("SAXS:Capture_RBV") == "Capture" and cell.get("SAXS:NumCaptured_RBV") == 0
        path = Path(cell.get("SAXS:FullFileName_RBV"))
        assert path == root / "ioc-tests" / f"saxs_{number:05d}.h5"
        assert cell.get("SAXS:FileNumber") == number + 1
        frames = [cell.acquire(0.5) for _ in range(2)]
        assert cell.get("SAXS:NumCaptured_RBV") == 2
        # readable while the IOC still writes (SWMR); the frame is the one Image_RBV served
        np.testing.assert_array_equal(read_frame(path, 1), frames[1]["image"])
        count = cell.get("SAXS:AcquireCount_RBV")
    finally:
        cell.put("SAXS:Capture", 0)
        put_text(cell, "SAXS:FilePath", ".")  # caproto cannot take an empty char waveform
    assert cell.enum("SAXS:Capture_RBV") == "Done"
    cell.acquire(0.5)  # not captured: Image_RBV only
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (2, 512, 512) and data.dtype == np.dtype("<i4") and data.chunks == (1, 512, 512)
        assert data.id.get_create_plist().get_filter(0)[0] == BITSHUFFLE_FILTER_ID
        for i, frame in enumerate(frames):
            np.testing.assert_array_equal(data[i], frame["image"])
        attrs = f["/entry/instrument/NDAttributes"]
        assert list(attrs["NDArrayUniqueId"][:]) == [count - 1, count]
        assert list(attrs["Elapsed"][:]) == [frame["elapsed"] for frame in frames]
        assert list(attrs["AcquireTime"][:]) == [0.5, 0.5]
        assert f["/entry/instrument/detector/geometry_poni"][()].decode() == cell.get("SAXS:PoniText_RBV")
