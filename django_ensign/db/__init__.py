"""Database engines for django_ensign."""
