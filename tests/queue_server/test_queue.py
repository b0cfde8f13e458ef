"""The overnight queue as an operator runs it: `mc-beamline queue start|status|stop` (subprocesses),
real Redis (the embedded one), the real simulated IOC and Tiled; plans submitted with the
bluesky-queueserver-api client, runs found in Tiled; bad submissions refused with a clear error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from bluesky_queueserver_api import BFunc, BPlan

from mc_beamline.queue_server import PROFILE_COLLECTION
from mc_beamline.queue_server.access import manager_api
from mc_beamline.queue_server.manager import (
    generate_existing_plans_and_devices,
    read_state,
)
from mc_beamline.storage import DataDir, read_stream_array


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queue_cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """`mc-beamline queue ...` in a subprocess (the CA settings of this process are inherited)."""
    return subprocess.run([sys.executable, "-m", "mc_beamline.cli", "queue", *args], capture_output=True,
                          text=True, timeout=timeout, env=env or dict(os.environ), stdin=subprocess.DEVNULL)


@contextmanager
def running_queue(data_dir: Path, *start_args: str, env: dict | None = None):
    """``queue start`` on ``data_dir`` (extra ``start_args``, control and info on free loopback
    ports); yields the RE Manager's API; ``queue stop --force`` (which must succeed) after."""
    control = f"tcp://127.0.0.1:{free_tcp_port()}"
    info = f"tcp://127.0.0.1:{free_tcp_port()}"
    proc = queue_cli("start", "--data-dir", str(data_dir), *start_args, "--zmq-control-addr", control,
                     "--zmq-info-addr", info, env=env)
    assert proc.returncode == 0, proc.stderr
    api = manager_api(data_dir, control, request_fail_exceptions=False)
    try:
        yield api
    finally:
        api.close()
        stop = queue_cli("stop", "--data-dir", str(data_dir), "--force")
        assert stop.returncode == 0, stop.stderr


QUICK = {"ny": 3, "nx": 4, "step_um": 0.4, "exposure_s": 0.01}


@pytest.fixture(scope="module")
def queue(sim_ioc):
    """A running queue on the session IOC's data directory; yields (api, data_dir)."""
    data_dir = Path(sim_ioc.data_dir)
    with running_queue(data_dir, env=dict(os.environ, MC_BEAMLINE_SUSPEND_SLEEP_S="0.2")) as api:
        yield api, data_dir


@pytest.fixture(scope="module")
def tiled_client(queue):
    from tiled.client import from_uri

    _, data_dir = queue
    client = from_uri(read_state(data_dir)["tiled_uri"], api_key=DataDir(data_dir).api_key(), trust_env=False)
    with client.context:
        yield client


def run_queue(api, items, timeout=180):
    """Add ``items``, run the queue to the end, return their history entries (in order)."""
    before = api.history_get()["items"]
    for item in items:
        response = api.item_add(item)
        assert response["success"], response["msg"]
    assert api.queue_start()["success"]
    api.wait_for_idle(timeout=timeout)
    return api.history_get()["items"][len(before):]


def test_queued_rasters_run_and_are_found_in_tiled(queue, tiled_client):
    api, data_dir = queue
    status = api.status()
    assert status["worker_environment_exists"] and status["plan_queue_mode"]["ignore_failures"] is True
    items = [BPlan("nanodiffraction_raster", "det", "stage", center_x_um=1.0 * i, **QUICK) for i in range(3)]
    history = run_queue(api, items)
    assert [h["result"]["exit_status"] for h in history] == ["completed"] * 3
    uids = [h["result"]["run_uids"][0] for h in history]
    assert len(set(uids)) == 3
    for i, uid in enumerate(uids):
        run = tiled_client[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert run.metadata["stop"]["num_events"]["primary"] == 12
        assert run.metadata["start"]["mc_beamline"]["scan_shape"] == [3, 4]
        assert run.metadata["start"]["mc_beamline"]["center_um"] == [1.0 * i, 0.0]
        xs = read_stream_array(tiled_client, uid, "stage_x")
        np.testing.assert_allclose(sorted(set(np.round(xs, 6))), 1.0 * i + np.array([-0.6, -0.2, 0.2, 0.6]))
        assert read_stream_array(tiled_client, uid, "det_image").shape == (12, 1065, 1030)
    assert not list((data_dir / "backup" / "documents").glob("*.jsonl"))  # nothing had to be kept aside


def test_queued_flow_series_raster_and_assembly_series_run_and_are_found_in_tiled(queue, tiled_client, reactor):
    api, _ = queue
    items = [BPlan("flow_series", "reactor", [280.0], [260.0], [4.5, 14.0]),
             BPlan("nanodiffraction_raster", "det", "stage", **QUICK),
             BPlan("assembly_series", "assembly", sample="binary", flocculant_mm=20.0, addition_time_s=1.0,
                   n_frames=3, interval_s=1.0, exposure_s=0.1)]
    history = run_queue(api, items)
    assert [h["result"]["exit_status"] for h in history] == ["completed"] * 3
    flow = tiled_client[history[0]["result"]["run_uids"][0]]
    assert flow.metadata["start"]["mc_beamline"]["experiment"] == "flow"
    assert flow.metadata["stop"]["exit_status"] == "success"
    assert flow.metadata["stop"]["num_events"]["primary"] == 2
    keys = flow.metadata["start"]["mc_beamline"]["keys"]
    spectra = read_stream_array(tiled_client, flow.metadata["start"]["uid"], keys["absorbance"])
    assert spectra.shape == (2, len(flow.metadata["start"]["mc_beamline"]["wavelength_nm"]))
    assert np.all(np.isfinite(spectra))
    raster = tiled_client[history[1]["result"]["run_uids"][0]]
    assert raster.metadata["stop"]["num_events"]["primary"] == 12
    assembly = tiled_client[history[2]["result"]["run_uids"][0]]
    assert assembly.metadata["start"]["mc_beamline"]["experiment"] == "assembly"
    assert assembly.metadata["stop"]["num_events"]["primary"] == 4  # a baseline frame and three after the addition
    images = read_stream_array(tiled_client, assembly.metadata["start"]["uid"], "assembly_saxs_image")
    assert images.shape == (4, 512, 512)


def test_queued_adaptive_flow_series_records_its_decisions_in_the_run(queue, tiled_client, reactor):
    api, _ = queue
    (item,) = run_queue(api, [BPlan("adaptive_flow_series", "reactor", max_conditions=2)])
    assert item["result"]["exit_status"] == "completed"
    run = tiled_client[item["result"]["run_uids"][0]]
    assert run.metadata["start"]["plan_name"] == "adaptive_flow_series"
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run.metadata["stop"]["num_events"]["primary"] == run.metadata["stop"]["num_events"]["optimization"] == 2
    # the midpoint of 190-350 °C, then the lower half of the bracket of the lower edge
    np.testing.assert_array_equal(run["optimization"]["nucleation_temperature_c"].read(), [270.0, 230.0])


def test_queued_adaptive_raster_records_its_decisions_in_the_run(queue, tiled_client):
    api, _ = queue
    (item,) = run_queue(api, [BPlan("adaptive_raster", "det", "stage", ny=5, nx=5, step_um=1.6, budget_fraction=0.4)])
    assert item["result"]["exit_status"] == "completed"
    run = tiled_client[item["result"]["run_uids"][0]]
    assert run.metadata["start"]["plan_name"] == "adaptive_raster"
    assert run.metadata["stop"]["exit_status"] == "success"
    n = run.metadata["stop"]["num_events"]["primary"]
    assert n == run.metadata["stop"]["num_events"]["optimization"] and 4 <= n <= 10  # budget: 40 % of 25 points
    # the survey first: every fourth row and column of 5 x 5, the second row backwards
    np.testing.assert_array_equal(run["optimization"]["grid_index"].read()[:4], [0, 4, 24, 20])


# Bad queue submissions: refused by `item_add` with the error the client sees, nothing queued.
BAD_SUBMISSIONS = [
    (BPlan("assembly_series", "assembly", sample="gel"), r"sample\s+Input should be 'colloid', 'monolayer' or"),
    (BPlan("assembly_series", "reactor"), r"cell\s+Input should be 'assembly'"),
    (BPlan("adaptive_flow_series", "reactor", family="CdSe-999"), r"family\s+Input should be 'CdSe-350'"),
    (BPlan("adaptive_raster", "det", "stage", budget_fraction=1.5),
     r"key='budget_fraction', value='1.5': Value 1.5 is out of range \[0.001, 1\]"),
    (BPlan("adaptive_flow_series", "reactor", max_conditions=500),
     r"key='max_conditions', value='500': Value 500 is out of range \[1, 100\]"),
    (BPlan("count", ["det"]), r"Plan 'count' is not in the list of allowed plans"),
    (BPlan("nanodiffraction_raster", "beam", "stage"), r"detector\s+Input should be 'det'"),
    (BPlan("nanodiffraction_raster", "det", "motor9"), r"stage\s+Input should be 'stage'"),
    (BPlan("nanodiffraction_raster", "det", "stage", ny=2.5), r"ny\s+Input should be a valid integer"),
    (BPlan("nanodiffraction_raster", "det", "stage", nx="many"), r"nx\s+Input should be a valid integer"),
    (BPlan("nanodiffraction_raster", "det", "stage", ny=0), r"key='ny', value='0': Value 0 is out of range \[1, 250000\]"),
    (BPlan("nanodiffraction_raster", "det", "stage", step_um=-0.4),
     r"key='step_um', value='-0.4': Value -0.4 is out of range \[0.001, 100\]"),
    (BPlan("nanodiffraction_raster", "det", "stage", exposure_s=0), r"key='exposure_s'.* out of range"),
    (BPlan("nanodiffraction_raster", "det", "stage", snake="sometimes"), r"snake\s+Input should be a valid boolean"),
    (BPlan("nanodiffraction_raster", "det", "stage", bogus=1), r"unexpected keyword argument 'bogus'"),
    (BPlan("nanodiffraction_raster", "det"), r"missing a required argument: 'stage'"),
    (BFunc("print", "hello"), r"Function 'print' is not allowed"),
    (BPlan("flow_series", "det", [280], [260], [4.5]), r"reactor\s+Input should be 'reactor'"),
    (BPlan("flow_series", "reactor", [280], [260], [4.5], flush_volumes=1),
     r"key='flush_volumes', value='1': Value 1 is out of range \[3, 1000\]"),
    (BPlan("flow_series", "reactor", [280], [260]), r"missing a required argument: 'reaction_times_s'"),
    (BPlan("flow_series", "reactor", "hot", [260], [4.5]), r"nucleation_temperatures_c\s+Input should be a valid list"),
]


@pytest.mark.parametrize("item, message", BAD_SUBMISSIONS, ids=lambda v: str(v)[:40] if isinstance(v, str) else None)
def test_bad_submissions_are_refused_with_a_clear_error(queue, item, message):
    import re

    api, _ = queue
    before = api.queue_get()["items"]
    if isinstance(item, BFunc):
        response = api.function_execute(item)
    else:
        response = api.item_add(item)
    assert response["success"] is False
    assert re.search(message, response["msg"]), response["msg"]
    assert api.queue_get()["items"] == before


# Submissions that pass the queue's checks but that the plan refuses before anything moves:
# the item fails with the plan's sentence and the queue goes on with the next item.
REFUSED_AT_RUN_TIME = [
    ({"ny": 3, "nx": 11, "step_um": 20.0}, r"stage x would travel -100…100 µm, outside its limits -50…50 µm; nothing was moved"),
    ({"ny": 3, "nx": 4, "center_y_um": 49.9}, r"stage y would travel .* outside its limits"),
]


FLOW_REFUSED_AT_RUN_TIME = [
    (([280.0], [300.0], [4.5]), r"The growth temperature 300 °C is above the nucleation temperature 280 °C"),
    (([450.0], [260.0], [4.5]), r"The nucleation temperature 450 °C is outside the reactor's range 20–400 °C"),
    (([280.0], [260.0], [0.01]), r"The reaction time 0.01 s needs .* mL/min from the Cd pump, above its maximum"),
    (([280.0], [260.0], [-4.5]), r"reaction times must be positive"),
]


def test_plans_refused_at_run_time_fail_alone_and_the_queue_goes_on(queue, tiled_client):
    import re

    api, _ = queue
    items = [BPlan("nanodiffraction_raster", "det", "stage", **kwargs) for kwargs, _ in REFUSED_AT_RUN_TIME]
    items += [BPlan("flow_series", "reactor", *args) for args, _ in FLOW_REFUSED_AT_RUN_TIME]
    items.append(BPlan("nanodiffraction_raster", "det", "stage", **QUICK))
    history = run_queue(api, items)
    for entry, (_, message) in zip(history, REFUSED_AT_RUN_TIME + FLOW_REFUSED_AT_RUN_TIME):
        assert entry["result"]["exit_status"] == "failed"
        assert entry["result"]["run_uids"] == []  # refused before a run was opened
        assert re.search(message, entry["result"]["msg"]), entry["result"]["msg"]
    assert history[-1]["result"]["exit_status"] == "completed"
    assert tiled_client[history[-1]["result"]["run_uids"][0]].metadata["stop"]["exit_status"] == "success"
    status = queue_cli("status", "--data-dir", str(queue[1]))  # the operator sees the last failure
    assert re.search(r"last failed item: flow_series \(failed\): .*reaction times must be positive", status.stdout), \
        status.stdout
    assert "NOT ANSWERING" not in status.stdout and "RE Manager: idle" in status.stdout


def test_queue_offers_only_the_plugins_plans_and_devices(queue):
    api, _ = queue
    assert set(api.plans_allowed()["plans_allowed"]) == {
        "nanodiffraction_raster", "nanodiffraction_fly_raster", "adaptive_raster", "flow_series", "adaptive_flow_series",
        "assembly_series"}
    assert set(api.devices_allowed()["devices_allowed"]) == {"det", "stage", "beam", "reactor", "assembly"}
    params = {p["name"]: p for p in api.plans_allowed()["plans_allowed"]["nanodiffraction_raster"]["parameters"]}
    assert params["ny"]["annotation"]["type"] == "int" and params["ny"]["min"] == "1"
    assert params["step_um"]["annotation"]["type"] == "float" and "µm" in params["step_um"]["description"]
    assert params["detector"]["annotation"]["devices"] == {"Detectors": ["det"]}


def test_tiled_refuses_anonymous_writes_on_the_queues_server(queue):
    _, data_dir = queue
    uri = read_state(data_dir)["tiled_uri"]
    with httpx.Client(trust_env=False) as http:
        anonymous = http.post(f"{uri}/api/v1/metadata/", json={"data": {"type": "container"}})
        listing = http.get(f"{uri}/api/v1/search/")
    assert anonymous.status_code == 401 and listing.status_code == 401


def test_status_reports_the_running_queue(queue):
    _, data_dir = queue
    proc = queue_cli("status", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    assert "manager: running" in proc.stdout and "redis: running" in proc.stdout
    assert "RE Manager: idle; environment open" in proc.stdout
    again = queue_cli("start", "--data-dir", str(data_dir), timeout=60)
    assert again.returncode == 2 and "already running" in again.stderr and "Traceback" not in again.stderr


KEYLESS_TIMEOUT_S = 1.0
"""How long a client without the public key waits for the RE Manager's answer that never comes."""


def test_control_channel_answers_only_clients_with_the_public_key(queue):
    from bluesky_queueserver import generate_zmq_keys
    from bluesky_queueserver_api.comm_base import RequestTimeoutError
    from bluesky_queueserver_api.zmq import REManagerAPI

    api, data_dir = queue
    control = read_state(data_dir)["zmq_control_addr"]
    for key in (None, generate_zmq_keys()[0]):  # no key, the key of another pair
        stranger = REManagerAPI(zmq_control_addr=control, zmq_public_key=key, timeout_recv=KEYLESS_TIMEOUT_S,
                                timeout_send=KEYLESS_TIMEOUT_S)
        try:
            with pytest.raises(RequestTimeoutError):
                stranger.queue_clear()
        finally:
            stranger.close()
    assert api.status(reload=True)["manager_state"] == "idle"


def test_redis_refuses_clients_without_the_password(queue):
    import redis

    from mc_beamline.queue_server.access import redis_client

    _, data_dir = queue
    address = read_state(data_dir)["redis_addr"]
    host, port = address.split(":")
    for password in (None, "wrong"):
        stranger = redis.Redis(host=host, port=int(port), password=password, socket_timeout=5.0,
                               socket_connect_timeout=5.0)
        try:
            with pytest.raises(redis.AuthenticationError):
                stranger.ping()
        finally:
            stranger.close()
    client = redis_client(data_dir, address)
    try:
        assert client.ping()
    finally:
        client.close()


def test_queue_secrets_are_private_and_off_every_command_line(queue):
    import stat

    from mc_beamline.queue_server.access import MANAGER_CONFIG
    from mc_beamline.queue_server.processes import command_line
    from mc_beamline.queue_server.redis import CONFIG_FILE

    _, data_dir = queue
    layout = DataDir(data_dir)
    private = [layout.redis_password_file, layout.zmq_private_key_file, layout.zmq_public_key_file,
               layout.queue / MANAGER_CONFIG, layout.queue / "redis" / CONFIG_FILE,
               *(layout.queue / "logs").glob("*.log")]  # the RE Manager logs the Redis address with its password
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    secrets = (layout.redis_password(), layout.zmq_keys()[1])
    state = read_state(data_dir)
    for name in ("manager", "redis"):
        line = command_line(state[name]["pid"])
        assert line and not any(secret in line for secret in secrets), name


@pytest.mark.parametrize("content", [None, "not a key\n"])
def test_status_with_a_missing_or_bad_public_key_is_one_sentence(queue, content):
    from mc_beamline.storage.data_dir import write_private

    _, data_dir = queue
    key_file = DataDir(data_dir).zmq_public_key_file
    kept = key_file.read_text()
    try:
        if content is None:
            key_file.unlink()
        else:
            key_file.write_text(content)
        proc = queue_cli("status", "--data-dir", str(data_dir), timeout=60)
    finally:
        write_private(key_file, kept)
    assert proc.returncode == 2 and "zmq_public_key" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_shipped_plan_and_device_list_is_what_the_startup_offers(tmp_path):
    generated = generate_existing_plans_and_devices(tmp_path)
    shipped = PROFILE_COLLECTION / "existing_plans_and_devices.yaml"
    assert yaml.safe_load(generated.read_text()) == yaml.safe_load(shipped.read_text()), (
        "regenerate it: python -c 'from pathlib import Path; from mc_beamline.queue_server.manager import "
        "generate_existing_plans_and_devices as g; g(Path(\"mc_beamline/queue_server/profile_collection\"))'"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["status"], r"No queue was started for .*no .*state\.json"),
        (["stop"], r"No queue was started for"),
        (["start", "--redis", "redis://127.0.0.1:6379"], r"Give the Redis address as HOST:PORT, without a scheme"),
        (["start", "--redis", "127.0.0.1:1"], r"No Redis server answers at 127\.0\.0\.1:1"),
    ],
)
def test_queue_command_errors_are_one_sentence(tmp_path, args, message):
    import re

    if args[0] == "start":
        args = [*args, "--zmq-control-addr", f"tcp://127.0.0.1:{free_tcp_port()}",
                "--zmq-info-addr", f"tcp://127.0.0.1:{free_tcp_port()}"]
    proc = queue_cli(*args, "--data-dir", str(tmp_path / "nothing-here"), timeout=60)
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
