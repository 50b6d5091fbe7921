"""The benchmarks' Django app: a published model, no-op and row-writing handlers, commands."""
