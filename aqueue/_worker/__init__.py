"""The worker: one task group that claims jobs, runs listeners, renews leases and
records outcomes.
"""
