"""Models and handlers the Django-side tests use."""
