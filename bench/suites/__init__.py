"""The benchmarks ``python -m bench`` runs; each module has ``run(ctx) -> Result``."""
