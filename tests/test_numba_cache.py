"""numba's cache goes to a directory the user can write when the package directory is not."""

from __future__ import annotations

import os

from mc_beamline import numba_cache


def test_unwritable_package_and_home_fall_back_to_a_private_temporary_directory(tmp_path, monkeypatch):
    home_file = tmp_path / "not-a-directory"
    home_file.write_text("")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home_file))  # ~/.cache cannot be made below a file
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(numba_cache.tempfile, "tempdir", None)
    chosen = numba_cache.configure(package_dir=tmp_path / "missing-package")
    assert chosen == str(tmp_path / f"mc-beamline-numba-{os.getuid()}")
    assert os.environ["NUMBA_CACHE_DIR"] == chosen
    assert (os.stat(chosen).st_mode & 0o777) == 0o700

