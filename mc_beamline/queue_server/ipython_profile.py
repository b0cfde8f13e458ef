"""``mc-beamline profile install``: an IPython profile whose startup is ``mc_beamline.startup``."""

from __future__ import annotations

from pathlib import Path

STARTUP_FILE = "00-mc-beamline.py"

_TEMPLATE = '''\
# Created by `mc-beamline profile install`: the beamline session (RunEngine `RE`, devices
# `det`, `stage`, `beam`, plans such as `nanodiffraction_raster`, live table and plots,
# progress bar, bluesky magics). Settings: environment variables MC_BEAMLINE_* (see
# mc_beamline.queue_server.session); the values below are defaults for this profile.
import os

os.environ.setdefault("MC_BEAMLINE_DATA_DIR", {data_dir!r})
os.environ.setdefault("MC_BEAMLINE_PREFIX", {prefix!r})
{tiled_line}
from mc_beamline.startup import *  # noqa: E402,F401,F403
'''


def install_profile(name: str = "mc_beamline", *, data_dir: Path, prefix: str = "MC:",
                    tiled_uri: str | None = None, ipython_dir: Path | None = None,
                    force: bool = False) -> Path:
    """Create IPython profile ``name`` (in ``ipython_dir``, default IPython's) and its startup file.

    Returns the startup file. Raises ``FileExistsError`` if it exists and ``force`` is false.
    """
    from IPython.core.profiledir import ProfileDir
    from IPython.paths import get_ipython_dir

    root = Path(ipython_dir or get_ipython_dir()).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    profile = ProfileDir.create_profile_dir_by_name(str(root), name)
    startup = Path(profile.startup_dir) / STARTUP_FILE
    if startup.exists() and not force:
        raise FileExistsError(f"{startup} exists already; use --force to replace it.")
    tiled_line = (f"os.environ.setdefault('MC_BEAMLINE_TILED_URI', {tiled_uri!r})" if tiled_uri
                  else "# MC_BEAMLINE_TILED_URI unset: an embedded Tiled server for the data directory starts")
    startup.write_text(_TEMPLATE.format(data_dir=str(Path(data_dir).expanduser().resolve()), prefix=prefix,
                                        tiled_line=tiled_line))
    return startup


__all__ = ["install_profile", "STARTUP_FILE"]
