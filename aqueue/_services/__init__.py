"""The loops every daemon runs beside its worker: the reaper and the callback dispatcher."""
