"""Storage of runs in Tiled, per data directory (see the modules for each concern).

- `data_dir`: the layout of a data directory, its API key and catalog choice;
- `server`: the embedded Tiled server (`TiledService`) and `connect`;
- `writer`: `tiled_writer` and the `BackedUpTiledWriter` with its local backup;
- `runs`: reading stored runs back (documents, stream arrays, derived-run lookup).

The names below are the ones a beamline session uses.
"""

from mc_beamline.storage.data_dir import DataDir
from mc_beamline.storage.runs import read_stream_array, run_documents
from mc_beamline.storage.server import TiledService, connect
from mc_beamline.storage.writer import (
           BackedUpTiledWriter,
           read_backup,
           resend_backup,
           tiled_writer,
)

__all__ = ["BackedUpTiledWriter", "DataDir", "TiledService", "connect", "read_backup", "read_stream_array",
           "resend_backup", "run_documents", "tiled_writer"]
