"""Every implementation of the step against the reference step, the PyTorch way.

The reference (:mod:`corrmom_ref._step.reference`) is the ground truth. Each
sibling (blocked generic, Numba, PyTorch's fused kernel, a JAX ``jit``, CuPy)
must give its result bit for bit where it declares ``ROUNDINGS = 0`` and within
one rounding per product where it declares ``1``, on the inputs it accepts;
inputs it declines go through the policy (:func:`corrmom_ref._step.policy.choose`)
to a path that is still right. Also here: the policy's choices, the shared
input check, the scope of :func:`corrmom_ref.use_fast_paths`, and which rules
batch together.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import corrmom_ref as cr
from corrmom_conformance import oracle
from corrmom_ref._step import admission, policy, switch
from corrmom_ref._step import blocked as step_blocked
from corrmom_ref._step import reference as step_reference
from corrmom_ref.fast_paths import kernel_roundings, use_fast_paths

NP = array_namespace(np.zeros(1))
BLOCK = step_blocked.BLOCK_ELEMENTS

# -- the paths -------------------------------------------------------------------


class _Sibling:
    """One path as the tests drive it: its namespace, array conversions, ``accepts`` and ``run``."""

    def __init__(self, name: str, load: Callable[[], tuple[Any, Any, Any, Any]]) -> None:
        self.name = name
        self._load = load

    def load(self) -> tuple[Any, Callable, Callable, Any]:
        """``(xp, to_native, to_numpy, module)`` or a skip with the reason."""
        return self._load()


def _numpy_generic() -> tuple[Any, Any, Any, Any]:
    class Generic:
        ROUNDINGS = step_blocked.ROUNDINGS
        blocked = step_blocked.BlockedStep(step_reference.corrected_in_place, step_reference.corrected_pure)

        @staticmethod
        def accepts(ps, gs, vs, lr, m) -> bool:
            return step_blocked.accepts(NP)

        @classmethod
        def run(cls, ps, gs, vs, lr, m):
            return cls.blocked.steps(NP, ps, gs, vs, lr, m)

    return NP, np.array, np.asarray, Generic


def _numba() -> tuple[Any, Any, Any, Any]:
    pytest.importorskip("numba", reason="Numba is not installed")
    from corrmom_ref._step.kernels import numba as numba_update

    return NP, np.array, np.asarray, numba_update


def _torch() -> tuple[Any, Any, Any, Any]:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from corrmom_ref._step.kernels import torch as torch_update

    if not torch_update.available():
        pytest.skip("this PyTorch has no fused SGD kernel")
    return (
        array_namespace(torch.zeros(1)),
        lambda a: torch.from_numpy(np.array(a)),
        lambda t: t.numpy(),
        torch_update,
    )


def _jax() -> tuple[Any, Any, Any, Any]:
    jax = pytest.importorskip("jax", reason="JAX is not installed")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from corrmom_ref._step.kernels import jax as jax_update

    return array_namespace(jnp.zeros(1)), jnp.asarray, np.asarray, jax_update


def _cupy() -> tuple[Any, Any, Any, Any]:
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (no CUDA device here)")
    from corrmom_ref._step.kernels import cupy as cupy_update

    return array_namespace(cupy.zeros(1)), cupy.asarray, cupy.asnumpy, cupy_update


SIBLINGS = [
    _Sibling("blocked generic", _numpy_generic),
    _Sibling("numba", _numba),
    _Sibling("torch fused", _torch),
    _Sibling("jax jit", _jax),
    _Sibling("cupy", _cupy),
]


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[np.ndarray], float, float]:
    """``([p, g, v], lr, m)``: float16/32/64, 0-d to 3-d or one array larger than a cache block,
    random mantissas at a drawn scale (finite: the rounding bound needs finite results)."""
    dtype = draw(st.sampled_from(["float16", "float32", "float64"]))
    large = draw(st.integers(0, 4)) == 0
    shape = (BLOCK + 3,) if large else draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e2]))
    arrays = [(rng.standard_normal(shape) * scale).astype(dtype) for _ in range(3)]
    lr = draw(st.sampled_from([0.013, 0.1, 1.0, 0.0]))
    m = draw(st.sampled_from([0.9, 0.0, 0.5, 0.99]))
    return arrays, lr, m


def _within(
    k: int, reference: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], v0, lr, m
) -> None:
    """``got`` within ``k`` roundings per product of ``reference`` (bitwise for ``k == 0``): the suite's bound."""
    (p_ref, v_ref), (p_got, v_got) = reference, got
    assert p_got.dtype == p_ref.dtype and v_got.dtype == v_ref.dtype
    where = oracle.beyond_rounding_bound("p", (p_got, v_got), (p_ref, v_ref), v0, lr, m, k)
    assert where is None, where


@pytest.mark.parametrize("sibling", SIBLINGS, ids=[s.name for s in SIBLINGS])
@settings(max_examples=40, deadline=None)
@given(case=_cases())
def test_every_path_is_the_reference_step_within_its_declared_roundings(sibling: _Sibling, case) -> None:
    """Where a path accepts the inputs it gives the reference's result (bitwise or within
    ``ROUNDINGS``); where it declines, the policy's path gives it bit for bit."""
    xp, to_native, to_numpy, path = sibling.load()
    arrays, lr, m = case
    p, g, v = (to_native(a) for a in arrays)
    reference = tuple(np.array(to_numpy(a)) for a in step_reference.corrected_step(xp, p, g, v, lr, m))
    p, g, v = (to_native(a) for a in arrays)
    if path.accepts([p], [g], [v], lr, m):
        (new_p,), (new_v,) = path.run([p], [g], [v], lr, m)
        _within(
            path.ROUNDINGS,
            reference,
            (np.array(to_numpy(new_p)), np.array(to_numpy(new_v))),
            arrays[2],
            lr,
            m,
        )
    else:
        with use_fast_paths(True):
            chosen = policy.choose("corrected", xp, [p], [g], [v], lr, m)
            assert chosen.roundings == 0, chosen  # a declined triple falls back to a bitwise path
            (new_p,), (new_v,) = chosen.run(xp, [p], [g], [v], lr, m)
        _within(0, reference, (np.array(to_numpy(new_p)), np.array(to_numpy(new_v))), arrays[2], lr, m)


@settings(max_examples=30, deadline=None)
@given(case=_cases())
def test_the_uncorrected_blocked_step_is_the_reference_step_bitwise(case) -> None:
    arrays, lr, m = case
    p, g, v = (a.copy() for a in arrays)
    reference = step_reference.uncorrected_step(NP, p, g, v, lr, m)
    p, g, v = (a.copy() for a in arrays)
    blocked = step_blocked.BlockedStep(step_reference.uncorrected_in_place, step_reference.uncorrected_pure)
    (new_p,), (new_v,) = blocked.steps(NP, [p], [g], [v], lr, m)
    _within(0, reference, (new_p, new_v), arrays[2], lr, m)


def test_the_reference_is_pure_on_read_only_arrays_and_in_place_otherwise() -> None:
    arrays = [np.linspace(-1, 1, 5) * s for s in (1.0, 0.5, 0.25)]
    p, g, v = (a.copy() for a in arrays)
    new_p, new_v = step_reference.corrected_step(NP, p, g, v, 0.1, 0.9)
    assert new_p is p and new_v is v
    frozen = [a.copy() for a in arrays]
    for a in frozen:
        a.flags.writeable = False
    pure_p, pure_v = step_reference.corrected_step(NP, *frozen, 0.1, 0.9)
    np.testing.assert_array_equal(frozen[0], arrays[0])  # untouched
    np.testing.assert_array_equal(pure_p, new_p)
    np.testing.assert_array_equal(pure_v, new_v)
    # eq. 9 in exact dyadic arithmetic: v = 0.5 * v - g, p = p + 0.25 * v
    p, g, v = np.array([1.0]), np.array([0.5]), np.array([2.0])
    assert step_reference.corrected_step(NP, p, g, v, 0.25, 0.5) == (np.array([1.125]), np.array([0.5]))


# -- the policy --------------------------------------------------------------------


def _triple(n: int = 4, dtype: str = "float32") -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.standard_normal(n).astype(dtype) for _ in range(3)]


def test_the_policy_prefers_the_native_kernel_then_blocked_generic_then_reference() -> None:
    p, g, v = _triple()
    native = policy.native_kernel(NP)
    with use_fast_paths(True):
        chosen = policy.choose("corrected", NP, [p], [g], [v], 0.1, 0.9)
        assert chosen.name == ("blocked generic" if native is None else native.__name__.rsplit(".", 1)[-1])
        # the uncorrected rule has no native kernel
        assert policy.choose("uncorrected", NP, [p], [g], [v], 0.1, 0.9).name == "blocked generic"
    with use_fast_paths(False):
        assert policy.choose("corrected", NP, [p], [g], [v], 0.1, 0.9).name == "blocked generic"


def test_backends_without_views_take_the_reference_step() -> None:
    dask_array = pytest.importorskip("dask.array", reason="Dask is not installed")
    xp = array_namespace(dask_array.zeros(1))
    p, g, v = (dask_array.from_array(a) for a in _triple())
    chosen = policy.choose("corrected", xp, [p], [g], [v], 0.1, 0.9)
    assert chosen.name == "reference" and chosen.roundings == 0


def test_a_list_the_native_kernel_declines_is_chosen_again_triple_by_triple() -> None:
    pytest.importorskip("numba", reason="Numba is not installed")
    first, odd = _triple(), _triple(dtype="float64")
    ps, gs, vs = ([a, b] for a, b in zip(first, odd, strict=True))
    with use_fast_paths(True):
        assert policy.choose("corrected", NP, ps, gs, vs, 0.1, 0.9).name == "per triple"
        expected = [step_reference.corrected_step(NP, *(a.copy() for a in t), 0.1, 0.9) for t in (first, odd)]
        new_ps, new_vs = policy.dispatched_corrected_steps(NP, ps, gs, vs, 0.1, 0.9)
    for (p, v), new_p, new_v in zip(expected, new_ps, new_vs, strict=True):
        np.testing.assert_array_equal(new_p, p)
        np.testing.assert_array_equal(new_v, v)


def test_kernel_roundings_reads_the_declaration_and_the_switch() -> None:
    native = policy.native_kernel(NP)
    with use_fast_paths(True):
        assert kernel_roundings(NP) == (0 if native is None else native.ROUNDINGS)
    with use_fast_paths(False):
        assert kernel_roundings(NP) == 0


# -- the shared input check ---------------------------------------------------------


class _NotAnArray:
    """An object of another library that has a NumPy array's dtype and shape."""

    def __init__(self, like: np.ndarray) -> None:
        self.dtype, self.shape = like.dtype, like.shape


def _aliased(kind: str) -> tuple[list, list, list]:
    p, g, v = _triple(6)
    if kind == "dtype":
        v = v.astype(np.float64)
    elif kind == "shape":
        g = g.reshape(2, 3)
    elif kind == "type":
        g = _NotAnArray(g)
    elif kind == "p is v":
        v = p
    elif kind == "g is v":
        g = v
    elif kind == "overlapping views":
        buffer = np.concatenate([p, v[:1]])
        p, v = buffer[:-1], buffer[1:]
    elif kind == "tied across triples":
        _, h, w = _triple(6)
        return [p, p], [g, h], [v, w]
    return [p], [g], [v]


ALIASED = ["dtype", "shape", "type", "p is v", "g is v", "overlapping views", "tied across triples"]


@pytest.mark.parametrize("kind", ALIASED)
def test_the_shared_check_declines_mixed_or_aliased_inputs(kind: str) -> None:
    assert admission.alike_and_separate(*_aliased("none"))
    assert not admission.alike_and_separate(*_aliased(kind))


@pytest.mark.parametrize("kind", ["p is v", "g is v", "overlapping views", "tied across triples"])
def test_declined_aliased_inputs_fall_back_and_are_still_right(kind: str) -> None:
    """The policy steps what the kernels decline as the reference does, bit for bit."""
    ps, gs, vs = _aliased(kind)
    if kind == "overlapping views":  # a twin buffer with the same two overlapping views
        buffer = ps[0].base.copy()
        twin = ([buffer[:-1]], [gs[0].copy()], [buffer[1:]])
    else:
        twin = copy.deepcopy((ps, gs, vs))  # keeps which arrays are one object
    expected_ps, expected_vs = [], []
    for p, g, v in zip(*twin, strict=True):
        p, v = step_reference.corrected_step(NP, p, g, v, 0.1, 0.9)
        expected_ps.append(p)
        expected_vs.append(v)
    with use_fast_paths(True):
        new_ps, new_vs = policy.dispatched_corrected_steps(NP, ps, gs, vs, 0.1, 0.9)
    for got, want in zip([*new_ps, *new_vs], [*expected_ps, *expected_vs], strict=True):
        np.testing.assert_array_equal(got, want)


# -- the switch ----------------------------------------------------------------------


def test_use_fast_paths_nests_and_restores_after_an_exception() -> None:
    assert switch.current() == (True, False)
    with use_fast_paths(False):
        assert switch.current() == (False, False)
        with use_fast_paths(True, donate=True):
            assert switch.current() == (True, True)
        assert switch.current() == (False, False)
        with pytest.raises(RuntimeError, match="inside"), use_fast_paths(True):
            raise RuntimeError("inside")
        assert switch.current() == (False, False)
    assert switch.current() == (True, False)
    assert cr.use_fast_paths is use_fast_paths


def test_use_fast_paths_does_not_leak_into_other_threads_or_contexts() -> None:
    seen: dict[str, Any] = {}
    entered, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        entered.wait()
        seen["thread"] = switch.current()
        release.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with use_fast_paths(False):
        entered.set()
        release.wait(5)
        seen["here"] = switch.current()
        seen["copied context"] = contextvars.copy_context().run(switch.current)
    thread.join()
    assert seen == {"thread": (True, False), "here": (False, False), "copied context": (False, False)}

    async def task(enabled: bool) -> bool:
        with use_fast_paths(enabled):
            await asyncio.sleep(0)
            return switch.current().enabled

    async def both() -> list[bool]:
        return list(await asyncio.gather(task(False), task(True)))

    assert asyncio.run(both()) == [False, True]


# -- batchability --------------------------------------------------------------------


def test_the_momentum_rules_declare_themselves_batchable() -> None:
    assert cr.CorrectedMomentumSGDRule.batchable and cr.MomentumSGDRule.batchable


def test_a_subclass_overriding_step_without_the_flag_is_not_batchable_and_runs_its_step() -> None:
    calls = []

    class Counted(cr.CorrectedMomentumSGDRule):
        @staticmethod
        def step(xp, p, g, v, lr, m):
            calls.append(p.shape)
            return cr.CorrectedMomentumSGDRule.step(xp, p, g, v, lr, m)

    class Declared(Counted):
        batchable = True  # e.g. a subclass that also gives a matching steps

    assert Counted.batchable is False and Declared.batchable is True
    link = cr.Link(a=cr.Parameter(np.ones(2)), b=cr.Parameter(np.ones(3)))
    opt = cr.CorrectedMomentumSGD().setup(link)
    for param in link.params():
        param.update_rule = Counted(opt.hyperparam)
    for _ in range(2):
        for param in link.params():
            param.grad = np.ones(param.shape)
        opt.update()
    assert calls == [(2,), (3,)] * 2


def _keys(parent_lrs: list[Any]) -> list[Any]:
    """The batch keys of one rule per optimizer (so per parent hyperparameter), each with its own ``lr``."""
    keys = []
    for lr in parent_lrs:
        link = cr.Link(w=cr.Parameter(np.ones(2)))
        opt = cr.CorrectedMomentumSGD(lr=lr).setup(link)
        link.w.grad = np.ones(2)
        opt.update()  # creates the state
        link.w.grad = np.ones(2)
        keys.append(link.w.update_rule.batch_key(link.w))
    return keys


def test_rules_with_equal_values_batch_together_whatever_their_parents() -> None:
    same, other = _keys([0.5, 0.5]), _keys([0.5, 0.25])
    assert same[0] == same[1] and hash(same[0]) == hash(same[1])
    assert other[0] != other[1]
    assert _keys([0.5])[0] != _keys([np.float32(0.5)])[0]  # the type too (NumPy 1.x rounds 0-d by it)


def test_subclasses_of_one_library_pass_the_shared_check_and_torch_takes_them() -> None:
    """``torch.nn.Parameter`` with a plain tensor gradient (the ``corrmom_ref.torch`` case) is one library."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from corrmom_ref._step.kernels import torch as torch_update

    p, g, v = (torch.from_numpy(a) for a in _triple(6))
    p = torch.nn.Parameter(p)
    assert admission.alike_and_separate([p], [g], [v])
    assert torch_update.accepts([p], [g], [v], 0.1, 0.9) == torch_update.available()


def test_torch_overlapping_views_are_declined_and_stepped_as_the_reference() -> None:
    """Regression: the fused PyTorch kernel used to take ``p`` and ``v`` viewing one storage
    with an offset (0.6 off the reference step, not one rounding); now the shared check declines them."""
    torch = pytest.importorskip("torch")
    g = torch.full((8,), 0.5)

    def stepped(fast: bool) -> Any:
        buffer = torch.arange(12, dtype=torch.float32) / 7
        p, v = buffer[0:8], buffer[4:12]
        others = [torch.ones(3) for _ in range(3)]  # a second, ordinary triple in the same list
        with use_fast_paths(fast):
            policy.dispatched_corrected_steps(
                array_namespace(p), [p, others[0]], [g, others[1]], [v, others[2]], 0.1, 0.9
            )
        return buffer

    assert torch.equal(stepped(True), stepped(False))
