"""Batched updates (``update_all``) leave everything exactly as rules updating one by one do.

With no rule hooks, :meth:`GradientMethod.update` hands rules of one class,
dtype, device, ``lr`` and ``momentum`` to one ``update_batch`` call. A rule
hook anywhere makes every rule update in turn (Chainer's loop), so a no-op
hook on each rule gives the one-by-one reference to compare with.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from array_api_compat import array_namespace
from backends import Backend
from helpers import assert_same_snapshot, deep_snapshot

import corrmom_ref as cr
from corrmom_ref._step import blocked as step_blocked
from corrmom_ref._step import policy
from corrmom_ref._step import reference as step_reference
from corrmom_ref.fast_paths import use_fast_paths


def _model(bk: Backend) -> cr.Link:
    """float32 parameters (one with its own ``lr``, one whose gradient is cleared), one float64, one disabled."""
    return cr.Link(
        a=cr.Parameter(bk.asarray(np.linspace(-1, 1, 7), "float32")),
        b=cr.Parameter(bk.asarray(np.arange(6).reshape(2, 3) / 3, "float32")),
        c=cr.Parameter(bk.asarray([0.5, -0.25], "float32")),
        frozen=cr.Parameter(bk.asarray([1.0, 2.0], "float32")),
        cleared=cr.Parameter(bk.asarray([3.0], "float32")),
        wide=cr.Parameter(bk.asarray([0.125, -4.0, 9.0], "float64")),
    )


def _train(bk: Backend, optimizer: type[cr.GradientMethod], one_by_one: bool) -> dict:
    link = _model(bk)
    opt = optimizer(lr=0.1, momentum=0.9).setup(link)
    link.c.update_rule.hyperparam.lr = 0.03
    link.frozen.update_rule.enabled = False
    if one_by_one:
        for param in link.params():
            param.update_rule.add_hook(lambda rule, param: None, name="noop")
    for step in range(4):
        for k, (_, param) in enumerate(link.namedparams()):
            values = np.cos(np.arange(int(np.prod(param.shape))) + 3 * step + k).reshape(param.shape)
            param.grad = bk.asarray(values, str(param.dtype).rsplit(".", 1)[-1])
        link.cleared.grad = None  # update() reallocates it as zeros: it moves by momentum
        if step == 2:
            opt.lr = 0.05  # corrected momentum needs no correction when lr changes
        opt.update()
    return deep_snapshot(bk, opt)


@pytest.mark.parametrize("optimizer", [cr.CorrectedMomentumSGD, cr.MomentumSGD])
def test_batched_equals_one_by_one(bk: Backend, optimizer, monkeypatch) -> None:
    batches: list[list[str]] = []
    rule_class = optimizer.rule_class
    original = rule_class.update_batch.__func__

    def spy(cls, members):
        batches.append(sorted(param.name or "" for param, _ in members))
        original(cls, members)

    monkeypatch.setattr(rule_class, "update_batch", classmethod(spy))
    batched = _train(bk, optimizer, one_by_one=False)
    assert ["a", "b", "cleared"] in batches, "the batched path was not taken"
    batches.clear()
    one_by_one = _train(bk, optimizer, one_by_one=True)
    assert not batches, "a rule hook must make every rule update in turn"
    assert_same_snapshot(one_by_one, batched)


def test_batches_group_by_dtype_and_learning_rate(bk: Backend, monkeypatch) -> None:
    seen: list[tuple[int, ...]] = []
    original = cr.CorrectedMomentumSGDRule.update_batch.__func__

    def spy(cls, members):
        seen.append(tuple(int(np.prod(param.shape)) for param, _ in members))
        original(cls, members)

    monkeypatch.setattr(cr.CorrectedMomentumSGDRule, "update_batch", classmethod(spy))
    _train(bk, cr.CorrectedMomentumSGD, one_by_one=False)
    # 3 steps with state (the first creates it, one by one); per step (a, b, cleared)
    # together, c (its own lr) and wide (float64) apart, the disabled rule not at all
    assert sorted(seen) == sorted([(7, 6, 1), (2,), (3,)] * 3)


def test_a_rule_subclass_that_overrides_update_core_is_not_batched(bk: Backend) -> None:
    calls = []

    class Logged(cr.CorrectedMomentumSGDRule):
        def update_core(self, param: cr.Parameter) -> None:
            calls.append(param.name)
            super().update_core(param)

    _train_with_rules(bk, Logged, steps=2)
    assert calls == ["u", "w"] * 2


def _train_with_rules(bk: Backend, rule_class: type, steps: int) -> cr.Link:
    """``w`` = (1, 2) and ``u`` = (3, 4) under ``rule_class`` rules, ``steps`` steps of unit gradients at lr 0.5."""
    link = cr.Link(w=cr.Parameter(bk.asarray([1.0, 2.0])), u=cr.Parameter(bk.asarray([3.0, 4.0])))
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    for param in link.params():
        param.update_rule = rule_class(opt.hyperparam)
    for _ in range(steps):
        for param in link.params():
            param.grad = bk.asarray(np.ones(param.shape))
        opt.update()
    return link


def test_tied_parameters_update_as_one_by_one(bk: Backend) -> None:
    """Two parameters holding the same array (tied weights) see the same sequence of updates."""

    def run(one_by_one: bool) -> list[np.ndarray]:
        shared = bk.asarray([1.0, -2.0, 0.5])
        link = cr.Link(first=cr.Parameter(shared), second=cr.Parameter(shared))
        opt = cr.CorrectedMomentumSGD(lr=0.25, momentum=0.5).setup(link)
        if one_by_one:
            link.first.update_rule.add_hook(lambda rule, param: None, name="noop")
        for step in range(3):
            link.first.grad = bk.asarray([0.5, 1.0, -1.0 + step])
            link.second.grad = bk.asarray([2.0, -0.5, 0.25 * step])
            opt.update()
        return [bk.to_numpy(p.array) for p in link.params()]

    for a, b in zip(run(False), run(True), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_rule_subclass_with_its_own_step_is_not_batched(bk: Backend) -> None:
    """A new ``step`` without a matching ``steps`` must be used, not the parent's batched ``steps``."""

    class Halved(cr.CorrectedMomentumSGDRule):
        @staticmethod
        def step(xp, p, g, v, lr, m):
            return cr.CorrectedMomentumSGDRule.step(xp, p, g, v, lr / 2, m)

    def run(rule_class) -> np.ndarray:
        return bk.to_numpy(_train_with_rules(bk, rule_class, steps=3).w.array)

    halved, reference = run(Halved), run(cr.CorrectedMomentumSGDRule)
    # 3 steps of g = 1 from v = 0: v = -(1, 1.9, 2.71), moved by lr * v summed
    np.testing.assert_allclose(reference, [1.0 - 0.5 * 5.61, 2.0 - 0.5 * 5.61], rtol=1e-6)
    np.testing.assert_allclose(halved, [1.0 - 0.25 * 5.61, 2.0 - 0.25 * 5.61], rtol=1e-6)


def test_an_unhashable_batch_key_updates_one_by_one(bk: Backend, monkeypatch) -> None:
    """A device object that cannot be hashed (possible on some backend) must not break the step."""

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

    original = cr.CorrectedMomentumSGDRule.batch_key

    def key_with_unhashable_device(self, param):
        key = original(self, param)
        return None if key is None else (*key, Unhashable())

    monkeypatch.setattr(cr.CorrectedMomentumSGDRule, "batch_key", key_with_unhashable_device)
    batched = _train(bk, cr.CorrectedMomentumSGD, one_by_one=False)
    monkeypatch.undo()
    assert_same_snapshot(_train(bk, cr.CorrectedMomentumSGD, one_by_one=True), batched)


class _HalfOfParent(cr.Hyperparameter):
    """A hyperparameter that computes its ``lr`` (half the parent's) and holds no entry of its own."""

    @property
    def lr(self) -> float:
        return self.parent.lr / 2


def test_rules_batch_by_the_values_they_read_also_computed_ones(bk: Backend) -> None:
    """Rules without overrides of one parent share a batch keyed by the values they read; a rule
    whose hyperparameter computes ``lr`` (no entry of its own either) must not join them."""
    link = cr.Link(**{name: cr.Parameter(bk.asarray([1.0, -2.0])) for name in ("a", "b", "half")})
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.5).setup(link)
    link.half.update_rule.hyperparam = _HalfOfParent(opt.hyperparam)
    keys = {}
    for _ in range(2):
        for param in link.params():
            param.grad = bk.asarray([1.0, 1.0])
        keys = {name: param.update_rule.batch_key(param) for name, param in link.namedparams()}
        opt.update()
    assert keys["/a"] == keys["/b"] != keys["/half"]
    # Python floats: the values alone (other types enter with their type)
    assert keys["/a"][-2:] == (0.5, 0.5)
    # v = -g, then v = 0.5 v - g: w = 1 - 0.5 * (1 + 1.5) for lr 0.5, 1 - 0.25 * 2.5 for lr 0.25
    np.testing.assert_allclose(bk.to_numpy(link.a.array), [1.0 - 1.25, -2.0 - 1.25])
    np.testing.assert_allclose(bk.to_numpy(link.half.array), [1.0 - 0.625, -2.0 - 0.625])


def test_a_rule_whose_update_core_is_replaced_on_the_instance_is_not_batched(bk: Backend) -> None:
    calls = []
    link = cr.Link(w=cr.Parameter(bk.asarray([1.0, 2.0])), u=cr.Parameter(bk.asarray([3.0])))
    opt = cr.CorrectedMomentumSGD(lr=0.5).setup(link)
    rule = link.w.update_rule
    original = rule.update_core

    def logged(param: cr.Parameter) -> None:
        calls.append(param.name)
        original(param)

    rule.update_core = logged
    for _ in range(3):
        for param in link.params():
            param.grad = bk.asarray(np.ones(param.shape))
        opt.update()
    assert calls == ["w"] * 3


@pytest.mark.parametrize("optimizer", [cr.CorrectedMomentumSGD, cr.MomentumSGD])
def test_a_step_replaced_on_the_instance_is_the_step_that_runs(bk: Backend, optimizer) -> None:
    """``rule.step = f`` steps that parameter with ``f``, alone; the other rules keep theirs."""
    link = cr.Link(w=cr.Parameter(bk.asarray([1.0, 2.0])), u=cr.Parameter(bk.asarray([3.0])))
    opt = optimizer(lr=0.5).setup(link)
    rule = link.w.update_rule
    own_step = type(rule).step

    def halved(xp, p, g, v, lr, m):
        return own_step(xp, p, g, v, lr / 2, m)

    rule.step = halved
    for _ in range(3):
        for param in link.params():
            param.grad = bk.asarray(np.ones(param.shape))
        opt.update()
    # 3 steps of g = 1 from v = 0, m = 0.9. Eq. (9) moves p by lr * (1 + 1.9 + 2.71) = 5.61 lr;
    # eq. (10) by lr * (1 + 1.9 + 2.71) too, as lr is constant: halving lr halves the move.
    np.testing.assert_allclose(bk.to_numpy(link.w.array), [1.0 - 0.25 * 5.61, 2.0 - 0.25 * 5.61], rtol=1e-6)
    np.testing.assert_allclose(bk.to_numpy(link.u.array), [3.0 - 0.5 * 5.61], rtol=1e-6)


_STEPS = {
    "corrected": (policy.dispatched_corrected_step, policy.dispatched_corrected_steps),
    "uncorrected": (policy.dispatched_uncorrected_step, policy.dispatched_uncorrected_steps),
}


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize(
    ("lr", "m"),
    [(0.1, 0.9), (1e-3, 0.99), (6e4, 0.5), (1e5, 0.5), (3e38, 1e-45), (1e39, 0.5), (1e300, 1e-320)],
)
@pytest.mark.parametrize("kind", sorted(_STEPS))
def test_generic_batch_step_equals_single_steps(
    bk: Backend, dtype: str, lr: float, m: float, kind: str
) -> None:
    """Many triples in one generic call (``lr`` and ``m`` converted to arrays once) == one call per triple.

    The single-triple call multiplies by the Python floats; the values
    include ones beyond float16's and float32's range, where a converted
    scalar would overflow while NumPy 1.x widens the product instead.
    """
    if dtype == "float16" and not bk.has_float16:
        pytest.skip(f"{bk.name} has no float16")
    step, steps = _STEPS[kind]
    rng = np.random.default_rng(7)
    hosts = [[rng.standard_normal(n) * 4 for _ in range(3)] for n in (5, 1, 8)]

    def triples() -> tuple[list, list, list]:
        made = [[bk.asarray(a, dtype) for a in triple] for triple in hosts]
        return [t[0] for t in made], [t[1] for t in made], [t[2] for t in made]

    xp = array_namespace(bk.asarray([0.0]))
    with warnings.catch_warnings(), use_fast_paths(False):
        warnings.simplefilter("ignore")  # overflow in the products is part of the case (Dask: when computed)
        ps, gs, vs = triples()
        batch = steps(xp, ps, gs, vs, lr, m)
        ps, gs, vs = triples()
        single = [step(xp, p, g, v, lr, m) for p, g, v in zip(ps, gs, vs, strict=True)]
        for (p, v), p_batch, v_batch in zip(single, *batch, strict=True):
            np.testing.assert_array_equal(bk.to_numpy(p_batch), bk.to_numpy(p))
            np.testing.assert_array_equal(bk.to_numpy(v_batch), bk.to_numpy(v))


_KERNELS = {
    "corrected": (
        step_reference.corrected_in_place,
        step_reference.corrected_pure,
        step_reference.corrected_step,
    ),
    "uncorrected": (
        step_reference.uncorrected_in_place,
        step_reference.uncorrected_pure,
        step_reference.uncorrected_step,
    ),
}
_BLOCK = step_blocked.BLOCK_ELEMENTS


@pytest.mark.parametrize("odd", ["dtype", "read-only", "large"])
@pytest.mark.parametrize("kind", sorted(_KERNELS))
def test_a_batch_with_one_odd_triple_equals_single_steps(bk: Backend, kind: str, odd: str) -> None:
    """A batch whose triples are all alike is stepped with one choice for all; one odd triple
    (another dtype, a read-only parameter, a parameter large enough to block) must send the
    whole batch back to choosing triple by triple, with the single-step result each."""
    if odd == "read-only" and bk.name not in ("numpy", "numpy1"):
        pytest.skip("read-only arrays among writeable ones: NumPy's flags")
    in_place, pure, _ = _KERNELS[kind]
    calls: list[tuple[int, ...]] = []

    def spy(p, g, v, lr, m):
        calls.append(tuple(p.shape))
        return in_place(p, g, v, lr, m)

    blocked_step = step_blocked.BlockedStep(spy, pure)
    rng = np.random.default_rng(5)
    shapes = [(5,), (3,), (_BLOCK + 2,) if odd == "large" else (4,), (2,)]
    hosts = [[rng.standard_normal(shape) * 4 for _ in range(3)] for shape in shapes]

    def triples() -> tuple[list, list, list]:
        made = []
        for k, triple in enumerate(hosts):
            dtype = "float64" if odd == "dtype" and k == 2 else "float32"
            made.append([bk.asarray(a, dtype) for a in triple])
        if odd == "read-only":
            made[2][0].flags.writeable = False
        return [t[0] for t in made], [t[1] for t in made], [t[2] for t in made]

    xp = array_namespace(bk.asarray([0.0]))
    batch = blocked_step.steps(xp, *triples(), 0.1, 0.9)
    single = [blocked_step.steps(xp, [p], [g], [v], 0.1, 0.9) for p, g, v in zip(*triples(), strict=True)]
    for ((p,), (v,)), p_batch, v_batch in zip(single, *batch, strict=True):
        np.testing.assert_array_equal(bk.to_numpy(p_batch), bk.to_numpy(p))
        np.testing.assert_array_equal(bk.to_numpy(v_batch), bk.to_numpy(v))
    if odd == "large":  # blocked in the batch and in its single step where slices are views
        in_place = bk.name in ("numpy", "numpy1", "numba", "array_api_strict", "torch", "cupy")
        assert calls.count((_BLOCK,)) == (2 if in_place else 0)


@pytest.mark.parametrize("kind", sorted(_KERNELS))
def test_blocked_step_equals_the_reference_step(bk: Backend, kind: str) -> None:
    """A parameter larger than a cache block is stepped block by block (the last block short),
    with the reference step's result, bit for bit."""
    in_place, pure, reference = _KERNELS[kind]
    rng = np.random.default_rng(11)
    hosts = [rng.standard_normal(2 * _BLOCK + 7) for _ in range(3)]
    xp = array_namespace(bk.asarray([0.0]))
    p, g, v = (bk.asarray(a, "float32") for a in hosts)
    (blocked_p,), (blocked_v,) = step_blocked.BlockedStep(in_place, pure).steps(xp, [p], [g], [v], 0.05, 0.9)
    blocked = [bk.to_numpy(blocked_p), bk.to_numpy(blocked_v)]
    p, g, v = (bk.asarray(a, "float32") for a in hosts)
    whole = [bk.to_numpy(a) for a in reference(xp, p, g, v, 0.05, 0.9)]
    for a, b in zip(blocked, whole, strict=True):
        np.testing.assert_array_equal(a, b)


def test_equal_values_of_other_types_do_not_share_a_batch(bk: Backend) -> None:
    """A ``numpy.float32`` lr equal to a Python float lr rounds 0-d arithmetic otherwise on NumPy 1.x."""
    link = cr.Link(a=cr.Parameter(bk.asarray([1.0, -2.0])), b=cr.Parameter(bk.asarray([3.0, 4.0])))
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.5).setup(link)
    link.b.update_rule.hyperparam.lr = np.float32(0.5)
    for _ in range(2):  # the first update makes the state; a rule without state does not batch
        for param in link.params():
            param.grad = bk.asarray([1.0, 1.0])
        opt.update()
    for param in link.params():
        param.grad = bk.asarray([1.0, 1.0])
    key_a, key_b = (param.update_rule.batch_key(param) for param in (link.a, link.b))
    assert key_a is not None and key_b is not None
    assert key_a != key_b
