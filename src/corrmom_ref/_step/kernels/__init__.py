"""The native kernels, one module per framework, each importing it at module level.

Each has ``accepts(ps, gs, vs, lr, m)``, ``run(ps, gs, vs, lr, m)`` and
``ROUNDINGS``; :func:`corrmom_ref._step.policy.native_kernel` imports one when
it first sees that framework's arrays.
"""
