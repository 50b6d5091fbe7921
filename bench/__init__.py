"""Benchmarks for django-ensign: ``python -m bench [NAME ...]`` (see ``python -m bench --help``).

Every throughput figure is printed beside a ceiling measured in the same run, and each run
appends a dated entry (machine, versions, method, table) to ``BENCHMARKS.md``.
"""
