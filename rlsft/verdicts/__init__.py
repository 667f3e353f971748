"""Judging runs: the claims' decision rules (claims.py), reports with their tables and figures
(report.py, plots.py) and the validation sweep's tie rule (sweep.py), all read through the typed
run record (rlsft.runs.record)."""
