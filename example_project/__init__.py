"""The demo project: a ``weather`` app whose readings travel through Ensign and back."""
