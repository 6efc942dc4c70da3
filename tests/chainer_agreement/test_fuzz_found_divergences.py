"""Regression tests for the five divergences from Chainer 7.8.1 found by the differential fuzz (issue 11).

The expected values are Chainer's arithmetic written out here with plain
NumPy, operation by operation as ``chainer/optimizers/corrected_momentum_sgd.py``
and ``chainer/optimizer_hooks/*.py`` perform it, never produced by the
reference; constants quoted from real Chainer runs say so. Tests of NumPy
1.x's 0-d promotion rules are skipped under NumPy 2, where the rule does not
exist (``tests/differential`` runs all of this against real Chainer).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

import corrmom_ref as cr
from corrmom_ref._step.kernels import numba as numba_update
from corrmom_ref.fast_paths import use_fast_paths

NUMPY1 = int(np.__version__.split(".")[0]) < 2
numpy1_only = pytest.mark.skipif(not NUMPY1, reason="NumPy 1.x value-based casting of 0-d operands")


def chainer_corrected_steps(
    p0: Any, grads: list[Any], lr: Any, momentum: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Chainer's ``update_core_cpu`` of CorrectedMomentumSGD on one parameter, literally."""
    p = np.array(p0)
    v = np.zeros_like(p)
    for g in grads:
        v *= momentum
        v -= g
        p += lr * v
    return p, v


def run_reference(arrays: dict[str, np.ndarray], grads: list[Any], lr: Any, momentum: Any) -> cr.Link:
    model = cr.Link(**{name: cr.Parameter(a.copy()) for name, a in arrays.items()})
    opt = cr.CorrectedMomentumSGD(lr=0.1, momentum=0.9).setup(model)
    opt.lr, opt.momentum = lr, momentum
    for g in grads:
        for param in model.params():
            param.grad = np.array(g, dtype=param.array.dtype)
        opt.update()
    return model


def assert_bitwise(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes(), (actual, expected)


# -- 1. 0-d parameters under NumPy 1.x -------------------------------------------------------


@pytest.mark.parametrize("fast", [False, True])
def test_two_zero_d_float32_parameters_round_as_chainer(fast: bool) -> None:
    """Grouped 0-d parameters: ``v *= 0.9`` is computed in float64 on NumPy 1.x, as in Chainer.

    Chainer 7.8.1 on NumPy 1.26 ends this run (issue 11) with ``v == -1.84``
    (float32); the grouped update used to give -1.8399999.
    """
    grads = [1.6, 0.4]
    init = {"a": np.array(0.9, np.float32), "b": np.array(0.9, np.float32)}
    with use_fast_paths(fast):
        model = run_reference(init, [np.float32(g) for g in grads], 0.1, 0.9)
    p, v = chainer_corrected_steps(init["a"], [np.array(g, np.float32) for g in grads], 0.1, 0.9)
    for param in model.params():
        assert_bitwise(param.array, p)
        assert_bitwise(param.update_rule.state["v"], v)
    if NUMPY1:
        assert param.update_rule.state["v"] == np.float32(-1.84)


@numpy1_only
@pytest.mark.skipif(not numba_update.available(), reason="Numba is not installed")
def test_numba_loop_declines_zero_d_parameters() -> None:
    """With Numba, a single 0-d float32 parameter used to take the float32 loop and diverge on NumPy 1.x."""
    grads = [np.array(g, np.float32) for g in (1.6, 0.4, 0.7, -1.3)]
    init = np.array(0.9, np.float32)
    with use_fast_paths(True):
        model = run_reference({"a": init}, grads, 0.1, 0.9)
    p, v = chainer_corrected_steps(init, grads, 0.1, 0.9)
    assert_bitwise(model.a.array, p)
    assert_bitwise(model.a.update_rule.state["v"], v)
    assert not numba_update.accepts([init.copy()], [grads[0]], [np.zeros_like(init)], 0.1, 0.9)


@numpy1_only
@pytest.mark.parametrize("scalar_type", [np.float16, np.float32])
@pytest.mark.parametrize("fast", [False, True])
def test_numpy_scalar_lr_keeps_its_promotion_on_zero_d(scalar_type: type, fast: bool) -> None:
    """``opt.lr = numpy.float32(x)`` on a 0-d float16 parameter: Chainer keeps the NumPy scalar,
    so ``lr * v`` is computed in float32 (or float16), not in float64 as for a Python float."""
    init = np.array(0.9, np.float16)
    grads = [np.array(g, np.float16) for g in [1.6, 0.4] + [0.3] * 14]
    lr, momentum = scalar_type(0.1), scalar_type(0.9)
    with use_fast_paths(fast):
        model = run_reference({"a": init}, grads, lr, momentum)
    p, v = chainer_corrected_steps(init, grads, lr, momentum)
    assert_bitwise(model.a.array, p)
    assert_bitwise(model.a.update_rule.state["v"], v)
    # the difference the type makes here (so the test can tell the two apart)
    p_float, _ = chainer_corrected_steps(init, grads, float(lr), float(momentum))
    if scalar_type is np.float16:
        assert p.tobytes() != p_float.tobytes()


def test_numpy_scalar_hyperparameters_are_kept_as_given() -> None:
    opt = cr.CorrectedMomentumSGD(lr=np.float32(0.1), momentum=np.float64(0.5))
    assert type(opt.lr) is np.float32 and type(opt.momentum) is np.float64
    rule = cr.CorrectedMomentumSGDRule(lr=np.float16(0.25))
    assert type(rule.hyperparam.lr) is np.float16


# -- 2. GradientClipping: one dot per gradient in the gradient's dtype ------------------------


def random_cases(seed: int, count: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        dtype = (np.float16, np.float32, np.float64)[i % 3]
        shapes = [tuple(int(n) for n in rng.integers(1, 4, size=rng.integers(0, 3))) for _ in range(3)]
        cases.append([np.asarray(rng.normal(size=s) * 3, dtype=dtype) for s in shapes])
    return cases


def test_gradient_clipping_sums_dots_in_the_gradients_dtype() -> None:
    """Chainer: ``sqnorm = sum(g.ravel().dot(g.ravel()) for g)``; ``rate = threshold / sqrt(sqnorm)``;
    ``g *= rate`` when ``rate < 1``. A float64 sum of squares differed in the last bits."""
    mismatches = 0
    for grads in random_cases(11, 300):
        expected = [g.copy() for g in grads]
        sqnorm = sum(g.ravel().dot(g.ravel()) for g in expected)
        rate = 1.0 / np.sqrt(sqnorm)
        if rate < 1:
            for g in expected:
                g *= rate
        model = cr.Link(**{f"p{i}": cr.Parameter(np.zeros_like(g)) for i, g in enumerate(grads)})
        opt = cr.CorrectedMomentumSGD().setup(model)
        for param, g in zip(model.params(), grads, strict=True):
            param.grad = g.copy()
        cr.optimizer_hooks.GradientClipping(1.0)(opt)
        for param, g in zip(model.params(), expected, strict=True):
            mismatches += param.grad.tobytes() != g.tobytes() or param.grad.dtype != g.dtype
    assert mismatches == 0


# -- 3. GradientLARS: numpy.linalg.norm and NumPy scalars ------------------------------------


def test_gradient_lars_uses_numpy_norms() -> None:
    """Chainer: ``p_norm, g_norm = norm(p), norm(g)``; ``rate = where(p_norm > threshold,
    p_norm / (eps + g_norm + wd * p_norm), 1.0)``; ``g += wd * p; g *= rate``."""
    hook = cr.optimizer_hooks.GradientLARS(threshold=0.01, weight_decay=0.01, eps=1e-9)
    mismatches = 0
    for arrays in random_cases(12, 300):
        p = arrays[0]
        g = np.asarray(arrays[1 if arrays[1].shape == p.shape else 0] * 2, dtype=p.dtype)
        expected = g.copy()
        p_norm, g_norm = np.linalg.norm(p), np.linalg.norm(g)
        rate = np.where(p_norm > 0.01, p_norm / (1e-9 + g_norm + 0.01 * p_norm), 1.0)
        expected += 0.01 * p
        expected *= rate
        param = cr.Parameter(p.copy())
        param.grad = g.copy()
        hook(None, param)
        mismatches += param.grad.tobytes() != expected.tobytes() or param.grad.dtype != expected.dtype
    assert mismatches == 0


# -- 4. a snapshot after a late use_fp32_update() ----------------------------------------------


def test_snapshot_after_late_fp32_update_loads() -> None:
    """``v`` created before ``use_fp32_update()`` stays float16; an optimizer configured the same
    way loads that snapshot (Chainer does), keeping float16, and continues identically."""

    def make() -> tuple[cr.Parameter, cr.CorrectedMomentumSGD]:
        w = cr.Parameter(np.ones(3, np.float16))
        return w, cr.CorrectedMomentumSGD(lr=0.1).setup(cr.Link(w=w))

    w, opt = make()
    w.grad = np.full(3, 0.5, np.float16)
    opt.update()
    opt.use_fp32_update()
    w.grad = np.full(3, 0.25, np.float16)
    opt.update()
    assert w.update_rule.state["v"].dtype == np.float16
    snapshot = io.BytesIO()
    cr.serializers.save_npz(snapshot, opt)

    w2, opt2 = make()
    w2.array = w.array.copy()
    opt2.use_fp32_update()
    snapshot.seek(0)
    cr.serializers.load_npz(snapshot, opt2)
    assert w2.update_rule.state["v"].dtype == np.float16
    assert_bitwise(w2.update_rule.state["v"], w.update_rule.state["v"])
    snapshot.seek(0)
    cr.serializers.load_npz(snapshot, opt)  # into existing float16 state: stays float16
    assert w.update_rule.state["v"].dtype == np.float16
    for param in (w, w2):
        param.grad = np.full(3, 0.125, np.float16)
    opt.update()
    opt2.update()
    assert_bitwise(w2.array, w.array)


def test_late_fp32_snapshot_still_refuses_other_dtypes() -> None:
    w = cr.Parameter(np.ones(3, np.float16))
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(w=w))
    opt.use_fp32_update()
    snapshot = {"t": np.int64(1), "epoch": np.int64(0), "w/t": np.int64(1), "w/v": np.zeros(3, np.float64)}
    with pytest.raises(TypeError, match="float64"):
        cr.serializers.NpzDeserializer(snapshot).load(opt)
    assert w.update_rule.state is None


# -- 5. NumPy scalar types at every public entry point ------------------------------------------

FLOAT_TYPES = [np.float16, np.float32, np.float64]
INT_TYPES = [np.int32, np.int64]


@pytest.mark.parametrize("scalar_type", FLOAT_TYPES + INT_TYPES)
def test_loss_scaling_takes_numpy_scalars(scalar_type: type) -> None:
    w = cr.Parameter(np.ones(2, np.float32))
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(w=w))
    opt.loss_scaling(scale=scalar_type(128))
    assert opt.loss_scale == 128
    opt.set_loss_scale(scalar_type(64))
    assert opt.loss_scale == 64
    opt.update(lambda: cr.ScriptedLoss({w: np.ones(2, np.float32)}))
    assert_bitwise(w.array, np.ones(2, np.float32) - np.float32(0.01))


@pytest.mark.parametrize("scalar_type", INT_TYPES)
def test_dynamic_loss_scaling_takes_numpy_interval(scalar_type: type) -> None:
    w = cr.Parameter(np.ones(2, np.float32))
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(w=w))
    opt.loss_scaling(interval=scalar_type(4))
    assert opt.loss_scale == 1.0
    snapshot: dict[str, Any] = {}
    cr.serializers.DictionarySerializer(snapshot).save(opt)
    assert snapshot["loss_scaling.interval"] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": np.bool_(True)}, r"\(bool_?\)"),  # NumPy 1 names the type bool_, NumPy 2 bool
        ({"scale": np.bool_(True)}, r"\(bool_?\)"),
        ({"scale": np.float32(0)}, r"finite and in \[2\*\*-126"),
    ],
)
def test_loss_scaling_refuses_numpy_bools_and_nonpositive(kwargs: dict, message: str) -> None:
    """A NumPy bool names its type; a zero scale names the accepted range."""
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(w=cr.Parameter(np.ones(2))))
    with pytest.raises(ValueError, match=message):
        opt.loss_scaling(**kwargs)


@pytest.mark.parametrize("scalar_type", FLOAT_TYPES + INT_TYPES)
def test_hyperparameters_and_hooks_take_numpy_scalars(scalar_type: type) -> None:
    """Constructors, the lr/momentum proxies, per-parameter overrides, every hook's numbers,
    a parameter's loss scale and the counters, each given as a NumPy scalar."""
    hooks = cr.optimizer_hooks
    w = cr.Parameter(np.ones(3, np.float64))
    opt = cr.CorrectedMomentumSGD(lr=scalar_type(1), momentum=scalar_type(0)).setup(cr.Link(w=w))
    opt.lr = scalar_type(1)
    w.update_rule.hyperparam.momentum = scalar_type(0)
    for hook in (
        hooks.WeightDecay(scalar_type(0)),
        hooks.Lasso(scalar_type(0)),
        hooks.GradientClipping(scalar_type(100)),
        hooks.GradientHardClipping(scalar_type(-100), scalar_type(100)),
        hooks.GradientLARS(threshold=scalar_type(100)),
    ):
        opt.add_hook(hook)
    opt.t = scalar_type(3) if scalar_type in INT_TYPES else 3
    w.grad = np.full(3, 2.0)
    w.loss_scale = scalar_type(2)
    opt.update()
    assert_bitwise(w.array, np.full(3, 0.0))  # 1 - lr * g / loss_scale
    assert opt.t == 4


def test_numpy_scalar_loss_scale_keeps_its_type_through_a_snapshot() -> None:
    """A float32 loss scale comes back as a float32 scalar (its type changes 0-d float16 division)."""
    w = cr.Parameter(np.ones((), np.float16))
    opt = cr.CorrectedMomentumSGD().setup(cr.Link(w=w))
    opt.loss_scaling(scale=np.float32(3))
    w.grad = np.ones((), np.float16)
    opt.update()
    snapshot: dict[str, Any] = {}
    cr.serializers.DictionarySerializer(snapshot).save(opt)
    opt.loss_scaling(scale=3.0)
    cr.serializers.NpzDeserializer(snapshot).load(opt)
    assert type(opt.loss_scale) is np.float32 and opt.loss_scale == 3


# -- found by the fuzz beyond the five: a tied parameter's name -------------------------------


def test_registering_a_parameter_renames_it_as_chainer_does() -> None:
    """Chainer's ``init_scope`` sets ``param.name`` to the attribute name at every registration, so
    a parameter registered twice (tied) carries the last name; hooks see that name."""
    w = cr.Parameter(np.ones(2), name="given")
    inner = cr.Link()
    inner.add("W", w)
    assert w.name == "W"
    outer = cr.Link(inner=inner)
    outer.add("tied", w)
    assert w.name == "tied"
    assert [path for path, _ in outer.namedparams()] == ["/tied", "/inner/W"]


# -- found by the fuzz beyond the five: NaN bits of the Numba loop (docs/quirks.md row 13) ------


def nan_normalized(a: np.ndarray) -> bytes:
    b = a.copy()
    b[np.isnan(b)] = np.nan
    return b.tobytes()


def test_numpy_itself_returns_either_nan_of_a_sum_of_two_nans() -> None:
    """Why row 13 exists: ``p += t`` with both NaN keeps ``p``'s NaN or ``t``'s depending on the
    length (NumPy's SIMD and scalar loops order the operands differently), so no fixed rule of a
    compiled loop can follow it. Where NumPy does not vary here the test says so and passes."""
    outcomes = set()
    for n in (1, 2, 3, 4, 7, 8, 16, 64, 65):
        p = np.empty(n, np.float32)
        p.view(np.uint32)[:] = 0xFFC00000  # negative quiet NaN
        t = np.empty(n, np.float32)
        t.view(np.uint32)[:] = 0x7FC00000  # positive quiet NaN
        p += t
        assert np.isnan(p).all()
        outcomes.add(int(p.view(np.uint32)[0]))
    assert outcomes <= {0xFFC00000, 0x7FC00000}


@pytest.mark.skipif(not numba_update.available(), reason="Numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_loop_differs_from_numpy_only_in_nan_bits(dtype: type) -> None:
    """Row 13: with infinities and NaNs in the gradients the Numba loop and NumPy's step agree in
    every element that is not NaN, bit for bit, and in which elements are NaN."""
    rng = np.random.default_rng(5)
    p0 = np.asarray(rng.standard_normal(64), dtype=dtype)
    grads = [np.asarray(rng.standard_normal(64), dtype=dtype) for _ in range(3)]
    grads[0][::3] = np.inf
    grads[1][::2] = np.nan
    grads[2][1::4] = -np.inf
    for lr in (0.0, 0.1):
        expected_p, expected_v = p0.copy(), np.zeros_like(p0)
        p, v = p0.copy(), np.zeros_like(p0)
        for g in grads:
            with np.errstate(invalid="ignore"):
                expected_v *= 0.9
                expected_v -= g
                expected_p += lr * expected_v
            assert numba_update.accepts([p], [g], [v], lr, 0.9)
            numba_update.run([p], [g.copy()], [v], lr, 0.9)
            assert_bitwise(v, expected_v)
            assert nan_normalized(p) == nan_normalized(expected_p)
