"""A data directory on a small filesystem (a tmpfs the test mounts): refused before, failed cleanly during.

Mounting needs root (or the capability); the tests are skipped only where the mount fails.
"""

from __future__ import annotations

import os
import subprocess

import h5py
import numpy as np
import pytest

from mc_beamline.storage import connect, read_stream_array
from mc_beamline.storage.disk_space import NoSpaceLeftError, check_free_space
from tests.demo_process import demo_after_frames


@pytest.fixture
def small_fs(tmp_path):
    """A 96 MiB tmpfs mounted for the test."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_run_larger_than_the_free_space_is_refused(small_fs, monkeypatch):
    monkeypatch.setenv("MC_BEAMLINE_MIN_FREE_MIB", "8")
    assert check_free_space(small_fs, 50 * 2**20) > 58 * 2**20
    with pytest.raises(NoSpaceLeftError, match=f"no space left in {small_fs}: 96 MiB free, the run needs about "
                                               "200 MiB and 8 MiB must stay free"):
        check_free_space(small_fs, 200 * 2**20)


@pytest.mark.slow
def test_disk_filling_mid_demo_fails_the_run_and_keeps_what_it_recorded(small_fs):
    data_dir = small_fs / "mc-data"
    with demo_after_frames(data_dir, 5, env={"MC_BEAMLINE_MIN_FREE_MIB": "16"}) as demo:
        # another writer takes the space: 12 MiB stay free, below the 16 MiB the run must leave
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        with open(small_fs / "ballast", "wb") as f:
            f.write(b"\0" * max(free - 12 * 2**20, 0))
        stdout, stderr = demo.communicate(timeout=180)
    assert demo.returncode == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"mc-beamline demo: No space left in {data_dir}"), stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 10, stderr
    uid = last.split("; run ", 1)[1].split()[0]
    (small_fs / "ballast").unlink()
    with connect(data_dir=data_dir) as client:
        stop = client[uid].metadata["stop"]
        assert stop["exit_status"] == "fail" and "no space left" in stop["reason"]
        events = stop["num_events"]["primary"]
        stored = read_stream_array(client, uid, "det_image")
    (h5file,) = list((data_dir / "detector").rglob("*.h5"))
    with h5py.File(h5file, "r") as f:  # the IOC lives on and closed the file: no SWMR needed
        frames = f["/entry/data/data"]
        assert 5 <= events == frames.shape[0] < 117
        assert np.array_equal(stored, frames[:])


def test_a_backup_on_a_full_disk_keeps_its_documents_until_space_returns(small_fs):
    from event_model import compose_run

    from mc_beamline.storage.writer import _BackupFile, read_backup

    run = compose_run(metadata={"plan_name": "count"})
    backup = _BackupFile(small_fs / "backup" / f"{run.start_doc['uid']}.jsonl")
    backup("start", run.start_doc)
    ballast = small_fs / "ballast"
    with open(ballast, "wb", buffering=0) as f:  # fill the filesystem to the last byte
        try:
            while True:
                f.write(b"\0" * 2**12)
        except OSError:
            pass
    with pytest.raises(OSError):  # a document larger than the file's last page
        backup("stop", run.compose_stop(exit_status="fail", reason="x" * 3 * 2**12))
    ballast.unlink()
    backup.flush()  # space is back: the kept document is written, nothing was cut
    backup.close()
    assert [name for name, _ in read_backup(backup.path)] == ["start", "stop"]
    assert (os.stat(backup.path).st_mode & 0o777) == 0o600
