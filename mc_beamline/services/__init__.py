"""The beamline's long-lived services beside the RunEngine sessions: the document stream
(:mod:`.stream`), the analysis service that consumes it (:mod:`.analysis_service`), the
persistent run metadata that keeps ``scan_id`` unique (:mod:`.persistent_md`) and the log
files every process writes (:mod:`.logs`)."""
