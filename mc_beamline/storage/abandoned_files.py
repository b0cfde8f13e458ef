"""Detector files whose writer died: make them plain, closed HDF5 files again.

The detector writes its HDF5 files in SWMR mode (readers follow the frames while they
arrive). A writer killed mid-file leaves the file's consistency flags set: HDF5 then
opens it only with ``swmr=True`` (h5py) and refuses it otherwise ("file is already open
for write"). :func:`close_abandoned` copies such a file's objects, frames included (raw
chunks, no recompression), into a new file and puts it in place atomically, so every
frame written before the writer died reads back with a plain ``h5py.File(path)``.

Only call it once the writer is known to be dead: a file still being written looks the
same.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_abandoned(path: Path) -> bool:
    """Whether ``path`` is HDF5 that opens only in SWMR read mode (its writer did not close it)."""
    import h5py

    try:
        with h5py.File(path, "r"):
            return False
    except OSError:
        pass
    try:
        with h5py.File(path, "r", swmr=True):
            return True
    except OSError:
        return False


def close_abandoned(directory: Path) -> list[Path]:
    """Rewrite every abandoned HDF5 file below ``directory`` as a closed one; return their paths.

    The copy keeps the file's mode (owner-only detector files stay so).
    """
    import h5py
    import hdf5plugin  # noqa: F401 - the frames' compression filters

    repaired = []
    for path in sorted(Path(directory).rglob("*.h5")):
        if not is_abandoned(path):
            continue
        tmp = path.with_name(f".{path.name}.closing")
        with h5py.File(path, "r", swmr=True) as src, h5py.File(tmp, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
        repaired.append(path)
    return repaired


__all__ = ["close_abandoned", "is_abandoned"]
