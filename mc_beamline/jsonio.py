"""Result files: JSON written atomically, so a failed command never leaves half a RESULT.json."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Write ``result`` as JSON (no NaN: use None) to ``path``: the whole file appears or none."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Output directory {path.parent} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(result, fh, indent=1, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
