"""Benchmarks run from the CLI (``citypilot bench ...``), each against a same-run baseline."""
