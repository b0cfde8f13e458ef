"""``python -m mc_beamline.sim_iocs``: run the simulated beamline IOC in the foreground."""

import sys

from mc_beamline.sim_iocs.server import main

if __name__ == "__main__":
    sys.exit(main())
