"""Where numba keeps its compiled kernels: a directory the user can write, always.

numba caches next to the source (``__pycache__`` in the installed package) or in the
user's cache directory; for a user who can write neither (a shared installation, no
writable HOME) every cached kernel fails with a cryptic message. :func:`configure` runs
when the package is imported, before numba is: unless ``NUMBA_CACHE_DIR`` is set or the
package directory is writable, it points ``NUMBA_CACHE_DIR`` at the first writable of
``$XDG_CACHE_HOME/mc-beamline/numba`` (default ``~/.cache``) and a per-user directory in
the system's temporary directory (mode 0700, owned by the user).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _usable(directory: Path) -> bool:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory.stat().st_uid == os.getuid() and os.access(directory, os.W_OK | os.X_OK)
    except OSError:
        return False


def configure(package_dir: Path = PACKAGE_DIR) -> str | None:
    """Set ``NUMBA_CACHE_DIR`` if numba could not cache by itself; return the directory set, else None."""
    if os.environ.get("NUMBA_CACHE_DIR") or os.access(package_dir, os.W_OK):
        return None
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser())
    for directory in (cache_home / "mc-beamline" / "numba",
                      Path(tempfile.gettempdir()) / f"mc-beamline-numba-{os.getuid()}"):
        if _usable(directory):
            os.environ["NUMBA_CACHE_DIR"] = str(directory)
            return str(directory)
    return None


__all__ = ["configure"]
