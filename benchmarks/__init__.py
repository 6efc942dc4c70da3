"""Benchmarks of one optimizer step: ``python -m benchmarks`` or ``nox -s bench``.

Every result is a ratio measured side by side in one run (the machines here
are shared and noisy): large workloads against the streaming floor of
20 bytes per float32 element, many small parameters in microseconds per
parameter.
"""
