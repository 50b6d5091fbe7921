"""Same-run ceilings: what bare gRPC, SQLite and PostgreSQL do with the same messages and rows."""
