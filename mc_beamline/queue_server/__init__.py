"""The overnight queue: the RunEngine session that IPython and bluesky-queueserver load
(:mod:`.session`), the queue's typed plans (:mod:`.plans`), and the processes behind
``mc-beamline queue start|status|stop`` (:mod:`.manager`, :mod:`.redis`), and how every
client reaches them with the data directory's key and password (:mod:`.access`).

The shipped ``profile_collection/existing_plans_and_devices.yaml`` and
``profile_collection/user_group_permissions.yaml`` describe what queue clients may submit.
"""

from pathlib import Path

PROFILE_COLLECTION = Path(__file__).resolve().parent / "profile_collection"
"""Directory of the shipped queue-server files."""

STARTUP_MODULE = "mc_beamline.startup"
"""The module the RE worker imports."""

__all__ = ["PROFILE_COLLECTION", "STARTUP_MODULE"]
