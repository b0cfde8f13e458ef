"""`mc_beamline.startup`: what IPython and the queue server load.

Configuration errors give one sentence; without an API key there is no session (nothing is
written to Tiled anonymously); the namespace holds exactly the plugin's plans and devices;
`mc-beamline profile install` gives an IPython profile with the session, a live table,
the progress bar and bluesky's magics, against the real IOC and an embedded Tiled server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mc_beamline.queue_server.redis import stop_redis
from mc_beamline.queue_server.session import (
    StartupConfig,
    StartupError,
    start_session,
    tiled_api_key,
)
from mc_beamline.storage import DataDir


def python(code: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MC_BEAMLINE_RING_CURRENT_MIN_MA": "lots"}, r"MC_BEAMLINE_RING_CURRENT_MIN_MA must be a number, got 'lots'\."),
        ({"MC_BEAMLINE_RING_CURRENT_MIN_MA": "-5"}, r"must be a finite number >= 0"),
        ({"MC_BEAMLINE_SUSPEND_SLEEP_S": "nan"}, r"MC_BEAMLINE_SUSPEND_SLEEP_S must be a finite number >= 0"),
        ({"MC_BEAMLINE_RING_CURRENT_MIN_MA": "80", "MC_BEAMLINE_RING_CURRENT_RESUME_MA": "60"},
         r"RESUME_MA \(60 mA\) must not be below MC_BEAMLINE_RING_CURRENT_MIN_MA \(80 mA\)"),
    ],
)
def test_bad_settings_are_refused_with_one_sentence(env, message):
    with pytest.raises(StartupError, match=message):
        StartupConfig.from_env(env)


def test_settings_from_the_environment():
    config = StartupConfig.from_env({"MC_BEAMLINE_PREFIX": "XF:", "MC_BEAMLINE_DATA_DIR": "/tmp/x",
                                     "MC_BEAMLINE_RING_CURRENT_MIN_MA": "off", "MC_BEAMLINE_TILED_URI": "http://h:1"})
    assert config.prefix == "XF:" and config.data_dir == Path("/tmp/x") and config.tiled_uri == "http://h:1"
    assert config.ring_current_min_ma is None and config.backup_dir == Path("/tmp/x/backup/documents")
    assert StartupConfig.from_env({}).ring_current_min_ma == 50.0


def test_no_api_key_no_session(tmp_path, sim_ioc):
    config = StartupConfig(prefix=sim_ioc.prefix, data_dir=tmp_path, tiled_uri="http://127.0.0.1:9")
    with pytest.raises(StartupError, match=r"No API key for the Tiled server .* runs are never written anonymously"):
        tiled_api_key(config)
    with pytest.raises(StartupError, match=r"No API key"):
        start_session(config)


def test_startup_namespace_holds_only_the_plugins_plans_and_devices():
    from bluesky_queueserver.manager.profile_ops import (
        devices_from_nspace,
        plans_from_nspace,
    )

    code = ("import mc_beamline.startup as s, json; "
            "print(json.dumps({'names': sorted(k for k in vars(s) if not k.startswith('__')), "
            "'RE': type(s.RE).__name__, 'det': s.det.name, 'connected': s.det.connected, 'bec': s.bec is None}))")
    env = dict(os.environ, MC_BEAMLINE_OFFLINE="1", _QSERVER_RE_WORKER_ACTIVE="1")
    proc = python(code, env)
    assert proc.returncode == 0, proc.stderr
    import json

    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["RE"] == "RunEngine" and info["det"] == "det" and info["connected"] is False and info["bec"]

    os.environ["MC_BEAMLINE_OFFLINE"] = "1"
    try:
        import importlib

        import mc_beamline.startup as startup

        namespace = vars(importlib.reload(startup))
    finally:
        os.environ.pop("MC_BEAMLINE_OFFLINE")
    assert set(plans_from_nspace(namespace)) == {"nanodiffraction_raster", "nanodiffraction_fly_raster", "adaptive_raster",
                                                  "flow_series", "adaptive_flow_series", "assembly_series"}
    assert set(devices_from_nspace(namespace)) == {"det", "stage", "beam", "reactor", "assembly"}


def test_profile_install_gives_an_ipython_session_with_table_progress_bar_and_magics(tmp_path, sim_ioc):
    ipython_dir = tmp_path / "ipython"
    data_dir = Path(sim_ioc.data_dir)
    install = subprocess.run([sys.executable, "-m", "mc_beamline.cli", "profile", "install", "--ipython-dir",
                              str(ipython_dir), "--data-dir", str(data_dir)], capture_output=True, text=True,
                             timeout=60)
    assert install.returncode == 0, install.stderr
    startup_file = ipython_dir / "profile_mc_beamline" / "startup" / "00-mc-beamline.py"
    assert startup_file.is_file() and str(startup_file) in install.stdout
    again = subprocess.run([sys.executable, "-m", "mc_beamline.cli", "profile", "install", "--ipython-dir",
                            str(ipython_dir)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists already; use --force" in again.stderr

    script = tmp_path / "check.ipy"
    script.write_text(
        "ip = get_ipython()\n"
        "print('magics', all(m in ip.magics_manager.magics['line'] for m in ('mov', 'movr', 'ct', 'wa')))\n"
        "print('bec', type(bec).__name__, 'progress', type(RE.waiting_hook).__name__)\n"
        "det.time_scale.set(0).wait(5)\n"
        "(uid,) = RE(nanodiffraction_raster(det, stage, ny=2, nx=2, exposure_s=0.01))\n"
        "det.time_scale.set(1).wait(5)\n"
        "import mc_beamline.startup as s\n"
        "print('stored', s._session.client[uid].metadata['stop']['exit_status'])\n"
    )
    env = dict(os.environ, MC_BEAMLINE_RING_CURRENT_MIN_MA="off")
    try:
        proc = subprocess.run([sys.executable, "-m", "IPython", f"--ipython-dir={ipython_dir}",
                               "--profile=mc_beamline", "--no-banner", "--colors=NoColor", str(script)],
                              capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL)
    finally:
        # the session started the data directory's Redis
        stop_redis(data_dir / "queue" / "redis", DataDir(data_dir).redis_password())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "magics True" in proc.stdout
    assert "bec BestEffortCallback progress ProgressBarManager" in proc.stdout
    assert re.search(r"\| +seq_num \| +time \| +stage_y \| +stage_x \|", proc.stdout), proc.stdout  # live table
    assert "stored success" in proc.stdout
