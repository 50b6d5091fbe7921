"""``"ENGINE": "django_ensign.db.backends.postgresql"``: Django's engine, plus held outbox rows."""
