"""Ensign wire-level helpers shared by the SDK and the embedded server.

Django-free: identifiers (ULID, RLID), mimetype names, timestamps.
"""
