"""Shared test support: real processes and services, no mocks."""
