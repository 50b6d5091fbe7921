"""Django database backends that send outbox rows with the COMMIT."""
