"""Benchmark of one corrected-momentum step against Chainer, PyTorch and optax.

Run ``python -m benchmarks`` (or ``nox -s bench``). Every implementation runs
in the same process (real Chainer in a worker process of its own virtualenv),
repetitions alternate between implementations so that machine drift hits all
of them alike, and each result is reported as a ratio to the memory floor
measured in the same run.
"""
