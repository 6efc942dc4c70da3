"""The optimizer API as Chainer users extend it (issue 21).

Rules written for Chainer override the per-device ``update_core_cpu``, keep
state entries nobody declared, meet parameters that are not initialised yet,
hand ``GradientNoise`` a noise function that checks ``xp is numpy``, and use
the deprecated ``chainer.optimizer.WeightDecay`` and its siblings. Expected
values come from the maths of the rule under test (plain SGD, a counter) or
from NumPy's float16 arithmetic on 1-d arrays; the tests marked ``chainer``
run the same steps in real Chainer 7.8.1 when it is importable.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest
from array_api_compat import is_numpy_array
from backends import Backend

import corrmom_ref as cr
import corrmom_ref.optimizer as cr_optimizer
from corrmom_ref.serializers import NpzDeserializer, load_npz, save_npz

#: Why the side-by-side checks skip (one wording with the other real-Chainer skips).
NO_CHAINER = (
    "real Chainer 7.8.1 is not importable here (`nox -s differential` and `nox -s fixtures` install it)"
)


def chainer_style_rule(base: type) -> type:
    """A rule as people write them for Chainer: plain SGD in ``update_core_cpu``, two undeclared entries.

    ``state['count']`` (a Python int) counts the steps, ``state['last']`` keeps
    the last gradient; ``p <- p - lr * g``.
    """

    class CountingSGDRule(base):  # type: ignore[misc,valid-type]
        def init_state(self, param: Any) -> None:
            self.state["count"] = 0
            self.state["last"] = np.zeros_like(param.array)

        def update_core_cpu(self, param: Any) -> None:
            if param.grad is None:
                return
            self.state["count"] += 1
            self.state["last"] = param.grad.copy()
            param.array -= self.hyperparam.lr * param.grad

    return CountingSGDRule


def chainer_style_optimizer(base: type, rule_class: type) -> type:
    class CountingSGD(base):  # type: ignore[misc,valid-type]
        def __init__(self, lr: float = 0.5) -> None:
            super().__init__()
            self.hyperparam.lr = lr

        def create_update_rule(self) -> Any:
            return rule_class(self.hyperparam)

    return CountingSGD


Rule = chainer_style_rule(cr.UpdateRule)
CountingSGD = chainer_style_optimizer(cr.GradientMethod, Rule)


def numpy_model() -> tuple[cr.Link, cr.Parameter]:
    w = cr.Parameter(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    return cr.Link(W=w), w


# -- 1. per-device update methods ------------------------------------------------------


def test_update_core_cpu_updates_numpy_parameters() -> None:
    link, w = numpy_model()
    opt = CountingSGD(lr=0.5).setup(link)
    w.grad = np.array([2.0, 4.0, -2.0], dtype=np.float32)
    opt.update()
    np.testing.assert_array_equal(w.array, np.array([0.0, 0.0, 4.0], dtype=np.float32))
    assert w.update_rule.state["count"] == 1 and w.update_rule.t == 1


def test_update_core_gpu_alone_does_not_fit_numpy_arrays() -> None:
    class GpuOnly(cr.UpdateRule):
        def update_core_gpu(self, param: Any) -> None:  # pragma: no cover - never called
            raise AssertionError

    w = cr.Parameter(np.ones(2, dtype=np.float32), name="W")
    w.grad = np.ones(2, dtype=np.float32)
    rule = GpuOnly()
    with pytest.raises(NotImplementedError, match=r"GpuOnly cannot update parameter 'W'.*update_core_gpu"):
        rule.update(w)
    assert rule.t == 0 and rule.state is None


def test_device_method_that_does_not_fit_is_refused_before_anything_changes(bk: Backend) -> None:
    array = bk.asarray([1.0, 2.0])
    if is_numpy_array(array):
        pytest.skip("NumPy arrays fit update_core_cpu")
    w = cr.Parameter(array)
    w.grad = bk.asarray([1.0, 1.0])
    opt = CountingSGD().setup(cr.Link(W=w))
    with pytest.raises(
        NotImplementedError, match=r"CountingSGDRule cannot update parameter 'W'.*update_core_cpu"
    ):
        opt.update()
    assert opt.t == 0 and w.update_rule.t == 0 and w.update_rule.state is None
    np.testing.assert_array_equal(bk.to_numpy(w.array), [1.0, 2.0])


def test_update_core_stays_the_array_api_entry_point(bk: Backend) -> None:
    class Halve(cr.UpdateRule):
        def update_core(self, param: Any) -> None:
            param.array = param.array - param.grad / 2

        def update_core_cpu(self, param: Any) -> None:  # pragma: no cover - update_core wins
            raise AssertionError

    w = cr.Parameter(bk.asarray([1.0, 2.0]))
    w.grad = bk.asarray([2.0, 2.0])
    Halve().update(w)
    np.testing.assert_array_equal(bk.to_numpy(w.array), [0.0, 1.0])


# -- 2. serialize(serializer), every state entry ----------------------------------------


def saved(obj: Any) -> dict[str, np.ndarray]:
    buffer = io.BytesIO()
    save_npz(buffer, obj)
    buffer.seek(0)
    with np.load(buffer) as npz:
        return {key: npz[key] for key in npz.files}


def test_every_state_entry_is_saved_and_loaded_then_stepped() -> None:
    link, w = numpy_model()
    opt = CountingSGD().setup(link)
    w.grad = np.array([2.0, 4.0, -2.0], dtype=np.float32)
    opt.update()
    snapshot = saved(opt)
    assert {"W/t", "W/count", "W/last"} <= set(snapshot)
    assert int(snapshot["W/count"]) == 1
    np.testing.assert_array_equal(snapshot["W/last"], [2.0, 4.0, -2.0])

    link2, w2 = numpy_model()
    w2.array = w.array.copy()
    opt2 = CountingSGD().setup(link2)
    buffer = io.BytesIO()
    save_npz(buffer, opt)
    buffer.seek(0)
    load_npz(buffer, opt2)
    assert opt2.t == 1 and w2.update_rule.t == 1 and w2.update_rule.state["count"] == 1
    np.testing.assert_array_equal(w2.update_rule.state["last"], [2.0, 4.0, -2.0])
    w2.grad = np.array([1.0, 1.0, 1.0], dtype=np.float32)
    opt2.update()
    assert w2.update_rule.state["count"] == 2
    np.testing.assert_array_equal(w2.array, [-0.5, -0.5, 3.5])


def test_rule_serialize_takes_chainers_signature() -> None:
    rule = Rule()
    stored = {"t": np.asarray(7), "count": np.asarray(3), "last": np.array([1.0, 2.0], dtype=np.float32)}
    rule.serialize(NpzDeserializer(stored))
    assert rule.t == 7 and int(rule.state["count"]) == 3
    np.testing.assert_array_equal(rule.state["last"], [1.0, 2.0])


def test_rule_serialize_strictness_as_in_chainer() -> None:
    incomplete = {"t": np.asarray(7), "last": np.zeros(2, dtype=np.float32)}
    with pytest.raises(KeyError, match="count"):
        Rule().serialize(NpzDeserializer(incomplete))
    lenient = Rule()
    lenient.serialize(NpzDeserializer(incomplete, strict=False))
    assert lenient.t == 7 and lenient.state is None  # created lazily at the first update
    disabled = Rule()
    disabled.enabled = False
    disabled.serialize(NpzDeserializer(incomplete))
    assert disabled.t == 7 and disabled.state is None


# -- 3. parameters not initialised yet ---------------------------------------------------


def lazy_model(bk: Backend) -> tuple[cr.Link, cr.Parameter, cr.Parameter]:
    lazy, ready = cr.Parameter(), cr.Parameter(bk.asarray([1.0, 2.0]))
    return cr.Link(a=lazy, b=ready), lazy, ready


@pytest.mark.parametrize(
    "hook", ["WeightDecay", "Lasso", "GradientClipping", "GradientHardClipping", "GradientLARS"]
)
# the clipping hooks under dynamic scaling warn once (tested in optimizer/test_loss_scaling_shared_rules.py)
@pytest.mark.filterwarnings("ignore::corrmom_ref.loss_scaling.ClippingUnderLossScalingWarning")
def test_uninitialized_parameter_is_skipped_as_in_chainer(bk: Backend, hook: str) -> None:
    link, lazy, ready = lazy_model(bk)
    opt = cr.CorrectedMomentumSGD(lr=0.5, momentum=0.0).setup(link)
    args = {"GradientHardClipping": (-10.0, 10.0), "GradientLARS": (1e9,)}.get(
        hook, (0.0 if hook != "GradientClipping" else 100.0,)
    )
    opt.add_hook(getattr(cr.optimizer_hooks, hook)(*args))
    opt.loss_scaling()  # dynamic: the NaN check walks every parameter
    ready.grad = bk.asarray([2.0, 2.0])
    opt.update()
    assert lazy.array is None and lazy.grad is None
    assert lazy.update_rule.t == 1 and lazy.update_rule.state is None  # t counts, as in Chainer
    np.testing.assert_array_equal(bk.to_numpy(ready.array), [0.0, 1.0])
    assert [path for path, _ in link.namedparams(include_uninit=False)] == ["/b"]
    assert set(saved(opt)) == {"t", "epoch", "a/t", "b/t", "b/v"} | {
        k for k in saved(opt) if k.startswith("loss_scaling.")
    }


def test_a_parameter_initialised_later_starts_its_state_then(bk: Backend) -> None:
    link, lazy, _ = lazy_model(bk)
    opt = cr.CorrectedMomentumSGD(lr=1.0, momentum=0.5).setup(link)
    opt.update()
    lazy.array = bk.asarray([4.0])
    lazy.grad = bk.asarray([2.0])
    opt.update()
    # v = 0.5 * 0 - g = -2; p = 4 + 1.0 * v = 2
    np.testing.assert_array_equal(bk.to_numpy(lazy.array), [2.0])
    assert lazy.update_rule.t == 2


def test_model_snapshot_with_an_uninitialized_parameter() -> None:
    model = cr.Link(W=cr.Parameter(np.ones(2, np.float32)), a=cr.Parameter())
    assert set(saved(model)) == {"W"}  # nothing to save for `a` yet
    buffer = io.BytesIO()
    save_npz(buffer, model)
    buffer.seek(0)
    fresh = cr.Link(W=cr.Parameter(np.zeros(2, np.float32)), a=cr.Parameter())
    load_npz(buffer, fresh)
    assert fresh.a.array is None
    np.testing.assert_array_equal(fresh.W.array, [1.0, 1.0])
    model.a.array = np.arange(3, dtype=np.float32)
    buffer = io.BytesIO()
    save_npz(buffer, model)
    buffer.seek(0)
    load_npz(buffer, fresh)  # initialises `a` from the snapshot, as Chainer does
    np.testing.assert_array_equal(fresh.a.array, [0.0, 1.0, 2.0])
    assert fresh.a.array.dtype == np.float32


def test_fp32_update_of_an_uninitialized_float16_parameter() -> None:
    seen: list[Any] = []

    class Record(cr.UpdateRule):
        def update_core(self, param: Any) -> None:
            seen.append((param, param.dtype))

    half, plain = cr.Parameter(dtype=np.dtype(np.float16)), cr.Parameter()
    for param in (half, plain):
        rule = Record()
        rule.use_fp32_update()
        rule.update(param)
    (master, master_dtype), (same, plain_dtype) = seen
    assert master is not half and master_dtype == np.float32 and half.array is None
    assert same is plain and plain_dtype is None


def test_chainer_style_rule_meets_an_uninitialized_parameter() -> None:
    lazy = cr.Parameter()
    opt = CountingSGD().setup(cr.Link(a=lazy))
    opt.update()
    assert lazy.update_rule.t == 1 and lazy.update_rule.state is None


# -- 4. GradientNoise's xp ----------------------------------------------------------------


def test_gradient_noise_hands_numpy_itself_for_numpy_arrays() -> None:
    modules = []

    def noise(xp: Any, shape: tuple[int, ...], dtype: Any, hook: Any, rule: Any) -> Any:
        modules.append(xp)
        return xp.full(shape, 0.25, dtype=dtype)

    link, w = numpy_model()
    opt = cr.CorrectedMomentumSGD(lr=1.0, momentum=0.0).setup(link)
    opt.add_hook(cr.optimizer_hooks.GradientNoise(1.0, noise_func=noise))
    w.grad = np.zeros(3, dtype=np.float32)
    opt.update()
    assert modules == [np]
    np.testing.assert_array_equal(w.array, [0.75, 1.75, 2.75])


# -- 5. deprecated aliases ----------------------------------------------------------------

DEPRECATED = {
    "WeightDecay": (0.1,),
    "Lasso": (0.1,),
    "GradientClipping": (1.0,),
    "GradientNoise": (0.1,),
    "GradientHardClipping": (-1.0, 1.0),
}


@pytest.mark.parametrize("name", sorted(DEPRECATED))
def test_deprecated_hook_alias_warns_and_works(name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hook = getattr(cr_optimizer, name)(*DEPRECATED[name])
    assert [w.category for w in caught] == [DeprecationWarning]
    assert f"corrmom_ref.optimizer_hooks.{name}" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller, as a deprecation should
    assert isinstance(hook, getattr(cr.optimizer_hooks, name))


def test_gradient_lars_has_no_deprecated_alias() -> None:
    assert not hasattr(cr_optimizer, "GradientLARS")  # Chainer 7.8.1 has none either


# -- 6. ScriptedLoss's 0-d float16 gradient -------------------------------------------------


def test_scripted_loss_scales_a_0d_float16_gradient_in_float16() -> None:
    g, scale = np.float16(0.1), 1000.7
    # the float16 arithmetic of a 1-d array: the scale rounded to float16, the product too
    expected = (np.array([g]) * np.array([scale], dtype=np.float16))[0]
    assert expected != np.float16(float(g) * scale)  # a case where float64 arithmetic would differ
    p0, p1 = cr.Parameter(np.zeros((), np.float16)), cr.Parameter(np.zeros(1, np.float16))
    cr.ScriptedLoss({p0: np.asarray(g), p1: np.array([g])}).backward(loss_scale=scale)
    assert p0.grad.dtype == np.float16 and p0.grad.shape == ()
    assert p0.grad == expected and p1.grad[0] == expected


# -- the same steps in real Chainer --------------------------------------------------------


def test_chainer_style_rule_next_to_chainer() -> None:
    chainer = pytest.importorskip("chainer", reason=NO_CHAINER)
    from chainer import serializers as chainer_serializers

    ChainerRule = chainer_style_rule(chainer.UpdateRule)
    ChainerSGD = chainer_style_optimizer(chainer.GradientMethod, ChainerRule)
    link = chainer.Link()
    with link.init_scope():
        link.W = chainer.Parameter(np.array([1.0, 2.0, 3.0], dtype=np.float32))
        link.a = chainer.Parameter()
    link.cleargrads()
    theirs = ChainerSGD().setup(link)
    ours_link, w = numpy_model()
    ours_link.add("a", cr.Parameter())
    ours = CountingSGD().setup(ours_link)
    for grad in ([2.0, 4.0, -2.0], [1.0, 1.0, 1.0]):
        link.W.grad = np.array(grad, dtype=np.float32)
        w.grad = np.array(grad, dtype=np.float32)
        theirs.update()
        ours.update()
        np.testing.assert_array_equal(w.array, link.W.array)
    buffer = io.BytesIO()
    chainer_serializers.save_npz(buffer, theirs)
    buffer.seek(0)
    with np.load(buffer) as npz:
        chainer_keys = set(npz.files)
    assert chainer_keys == set(saved(ours)) - {k for k in saved(ours) if k.startswith("loss_scaling.")}

    # a snapshot of an uninitialised parameter holds only its t: a strict load asks for the
    # entries its rule would create, and fails, in Chainer as here; a lenient one loads the rest
    def both() -> tuple[Any, Any]:
        their_link = chainer.Link()
        with their_link.init_scope():
            their_link.W = chainer.Parameter(np.zeros(3, dtype=np.float32))
            their_link.a = chainer.Parameter()
        our_link, _ = numpy_model()
        our_link.add("a", cr.Parameter())
        return ChainerSGD().setup(their_link), CountingSGD().setup(our_link)

    for load, opt in zip((chainer_serializers.load_npz, load_npz), both(), strict=True):
        buffer.seek(0)
        with pytest.raises(KeyError, match="a/count"):
            load(buffer, opt)
    their_resumed, resumed = both()
    for load, opt in ((chainer_serializers.load_npz, their_resumed), (load_npz, resumed)):
        buffer.seek(0)
        load(buffer, opt, strict=False)
    their_fresh, fresh = their_resumed.target, resumed.target.W
    for rule in (their_resumed.target.a.update_rule, resumed.target.a.update_rule):
        assert rule.t == 2 and rule.state is None
    assert their_fresh.W.update_rule.state["count"] == fresh.update_rule.state["count"] == 2
    np.testing.assert_array_equal(fresh.update_rule.state["last"], their_fresh.W.update_rule.state["last"])


def test_scripted_loss_next_to_chainers_backward() -> None:
    chainer = pytest.importorskip("chainer", reason=NO_CHAINER)
    import chainer.functions as F

    g, scale = np.float16(0.1), 1000.7
    p = chainer.Parameter(np.zeros((), np.float16))
    loss = F.sum(p * chainer.Variable(np.asarray(g)))
    p.cleargrad()
    loss.backward(loss_scale=scale)
    ours = cr.Parameter(np.zeros((), np.float16))
    cr.ScriptedLoss({ours: np.asarray(g)}).backward(loss_scale=scale)
    assert ours.grad.dtype == p.grad.dtype and ours.grad == p.grad
