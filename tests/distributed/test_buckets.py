"""Flat-buffer bucketing (no MPI needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from corrmom_ref.distributed.buckets import group_into_buckets


def test_buckets_group_by_dtype_in_order_and_round_trip():
    arrays = [
        np.arange(6.0).reshape(2, 3),
        np.arange(3, dtype=np.float32),
        np.array(7.0),
        np.ones((1, 2), dtype=np.float32),
    ]
    buckets = group_into_buckets(arrays, lambda a: a)
    assert [len(b.members) for b in buckets] == [2, 2]
    assert buckets[0].members[0] is arrays[0] and buckets[0].members[1] is arrays[2]
    for bucket in buckets:
        flat = bucket.pack(bucket.members, extra=(1.0,))
        assert flat.dtype == bucket.members[0].dtype
        assert flat.shape == (sum(a.size for a in bucket.members) + 1,)
        for got, want in zip(bucket.unpack(flat), bucket.members, strict=True):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(bucket.extras(flat), [1.0])
        reused = np.full_like(flat, np.nan)
        assert bucket.pack(bucket.members, extra=(1.0,), out=reused) is reused
        np.testing.assert_array_equal(reused, flat)


def test_importing_the_package_imports_neither_mpi4py_nor_numpy():
    code = "import sys, corrmom_ref.distributed; print(sorted({'mpi4py', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
