"""Tests of the example project and of the admin as a user sees it."""
