"""Fault tests: kill -9, read-only disk, outages, database restarts, clock skew, slow readers."""
