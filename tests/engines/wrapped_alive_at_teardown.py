"""``python wrapped_alive_at_teardown.py SCRIPT ARGS...``: run SCRIPT, failing if it destroys its
process group while a DDP or FSDP2-wrapped module is still alive.

Such a module holds the process group. Freed after the group was destroyed (DDP's
reducer, without releasing the GIL) or by the garbage collector at a moment of its
choosing (FSDP2's module sits in a reference cycle), it can hang or abort the process
at exit, now and then. ``gc.get_objects()`` lists cyclic garbage not yet collected
too, so a module merely dropped without ``gc.collect()`` still counts as alive.
"""

from __future__ import annotations

import gc
import runpy
import sys

import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel


def _destroy_checked(destroy):
    def destroy_process_group(*args, **kwargs):
        alive = [
            type(o).__name__ for o in gc.get_objects() if isinstance(o, DistributedDataParallel | FSDPModule)
        ]
        if alive:
            raise SystemExit(f"destroy_process_group() while these still hold the group: {alive}")
        return destroy(*args, **kwargs)

    return destroy_process_group


if __name__ == "__main__":
    dist.destroy_process_group = _destroy_checked(dist.destroy_process_group)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
