"""Handlers and models the subscription tests use."""
