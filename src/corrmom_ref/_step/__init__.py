"""The momentum step: its maths (``reference``), the policy that picks how it runs, and every way it runs.

See ``docs/architecture.md``. Backend code (``kernels``) is imported lazily, by
the policy, when it first sees that backend's arrays.
"""
