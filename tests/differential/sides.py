"""The two sides of the lockstep run: real Chainer 7.8.1, and corrmom_ref.

Each side builds the scenario's model and optimizer, applies one operation at
a time, and :meth:`Side.observe` returns everything that must agree as plain
comparable values (arrays as ``(dtype, shape, bytes)``): every parameter, its
gradient, its loss scale, its rule's ``t``, ``enabled``, state ``v`` and
float32 master copy; the optimizer's ``t``, ``epoch``, ``lr``, ``momentum``
and loss scale; the hook calls and the non-finite-gradient warnings since the
last observation.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import numpy as np

from differential import custom
from differential.scenario import Scenario, scalar, values

NONFINITE = re.compile(
    r"Non finite number found in param\.grad of (\S+) \(iteration: (\d+), loss_scale: ([^)]+)\)"
)


def array_key(a: Any) -> Any:
    """An array as ``(dtype, shape, bytes)``; ``None`` stays ``None``."""
    if a is None:
        return None
    a = np.asarray(a)
    return (str(a.dtype), a.shape, a.tobytes())


def scalar_key(x: Any) -> Any:
    """A hyperparameter or scale: its exact value (NaN-safe) and, where it changes arithmetic, its type.

    Only ``numpy.float16`` and ``numpy.float32`` round differently from a
    Python float (NumPy 1.x promotes a 0-d array with a scalar by the
    scalar's type: float64 for a Python ``float``, ``int``, ``numpy.float64``,
    ``numpy.int32`` and ``numpy.int64`` alike); every other type is one kind.
    Chainer's loss scale becomes the ``int`` 1 at its floor, for instance.
    """
    if x is None:
        return None
    kind = type(x).__name__
    if kind not in ("float16", "float32"):
        kind = "python"
    return (kind, np.float64(x).tobytes())


def deterministic_noise(xp: Any, shape: tuple[int, ...], dtype: Any, hook: Any, rule: Any) -> Any:
    """GradientNoise's noise function for the fuzz: ``0.01 * ((rule.t % 3) - 1)`` everywhere."""
    return xp.full(shape, 0.01 * ((rule.t % 3) - 1), dtype=dtype)


class Recorder:
    """Wraps a hook and logs each call (hook name, parameter name, gradient before the call)."""

    def __init__(self, inner: Any, name: str, log: list[Any]) -> None:
        self.inner = inner
        self.name = name
        self.log = log
        self.timing = getattr(inner, "timing", "pre")
        if getattr(inner, "call_for_each_param", False):
            self.call_for_each_param = True

    def __call__(self, *args: Any) -> None:
        if len(args) == 2:
            rule, param = args
            self.log.append(("hook", self.name, param.name, array_key(param.grad), rule.t))
        else:
            self.log.append(("hook", self.name, "optimizer", args[0].t))
        self.inner(*args)


class Side:
    """What both sides share: the operation dispatch and the observation."""

    hooks_module: Any
    params: list[Any]
    opt: Any

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.log: list[Any] = []

    # -- side-specific primitives (overridden) --
    def set_grad(self, param: Any, array: np.ndarray | None) -> None:
        raise NotImplementedError

    def update_with_loss(self, grads: dict[int, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self) -> bytes:
        raise NotImplementedError

    def load(self, data: bytes, strict: bool) -> None:
        raise NotImplementedError

    def loss_scale_of(self, param: Any) -> Any:
        raise NotImplementedError

    # -- the dispatch --
    def make_hook(self, spec: tuple[Any, ...]) -> Any:
        kind, *args = spec
        cls = getattr(self.hooks_module, kind)
        if kind == "GradientLARS":
            return cls(threshold=args[0], weight_decay=args[1])
        if kind == "GradientNoise":
            return cls(args[0], noise_func=deterministic_noise)
        return cls(*args)

    def rule_or_opt(self, level: Any) -> Any:
        return self.opt if level == "opt" else self.params[level].update_rule

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        specs = self.scenario.params
        if kind == "grads":
            for i, spec in op[1]:
                _, shape, dtype, _ = specs[i]
                self.set_grad(self.params[i], None if spec is None else values(shape, dtype, spec))
        elif kind == "update":
            self.opt.update()
        elif kind == "update_loss":
            self.update_with_loss({i: values(specs[i][1], specs[i][2], spec) for i, spec in op[1]})
        elif kind == "hp":
            _, target, name, value = op
            holder = self.opt if target == "opt" else self.params[target].update_rule.hyperparam
            setattr(holder, name, scalar(value))
        elif kind == "add_hook":
            _, level, spec, name, timing = op
            self.rule_or_opt(level).add_hook(Recorder(self.make_hook(spec), name, self.log), name, timing)
        elif kind == "remove_hook":
            self.rule_or_opt(op[1]).remove_hook(op[2])
        elif kind == "loss_scaling":
            _, interval, scale = op
            if scale is None:
                self.opt.loss_scaling(interval=scalar(interval))
            else:
                self.opt.loss_scaling(scale=scalar(scale))
        elif kind == "fp32":
            self.opt.use_fp32_update(op[1])
        elif kind == "enabled":
            self.params[op[1]].update_rule.enabled = op[2]
        elif kind == "new_epoch":
            self.opt.new_epoch()
        elif kind == "cleargrads":
            self.opt.target.cleargrads()
        elif kind == "init":
            _, shape, dtype, seed = specs[op[1]]
            self.params[op[1]].array = values(shape, dtype, (seed, 1.0, None))
        else:  # pragma: no cover - the scenario strategy makes no other kinds
            raise ValueError(f"unknown operation {op!r}")

    def observe(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for path, param in self.opt.target.namedparams():
            rule = param.update_rule
            master = getattr(rule, "_fp32_param", None)
            state[path] = (
                array_key(param.array),
                array_key(param.grad),
                scalar_key(self.loss_scale_of(param)),
                rule.t,
                bool(rule.enabled),
                None if rule.state is None else {k: array_key(v) for k, v in rule.state.items()},
                None if master is None else array_key(master.array),
                {k: scalar_key(v) for k, v in rule.hyperparam.__dict__.items() if k != "_parent"},
            )
        state["optimizer"] = (
            int(self.opt.t),
            int(self.opt.epoch),
            scalar_key(self.opt.lr),
            scalar_key(self.opt.momentum),
            scalar_key(self.opt._loss_scale),
        )
        state["paths"] = [path for path, _ in self.opt.target.namedparams()]
        state["calls"], self.log[:] = list(self.log), []
        return state

    def run(self, op: tuple[Any, ...]) -> tuple[BaseException | None, list[Any]]:
        """Apply ``op``; the exception it raised (or ``None``) and its non-finite warnings."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.apply(op)
                error = None
            except Exception as e:  # compared by the harness: both sides must raise, or neither
                error = e
        found = []
        for w in caught:
            message = w.message
            if hasattr(message, "iteration") and hasattr(message, "path"):  # ours: the details as attributes
                found.append((message.path, int(message.iteration), float(message.loss_scale)))
                continue
            match = NONFINITE.search(str(message))
            if match:
                found.append((match.group(1), int(match.group(2)), float(match.group(3))))
        return error, found


def _tree(scenario: Scenario) -> list[tuple[list[str], str, int]]:
    """``(link path parts, attribute name, parameter index)`` for each registration."""
    entries = [(path, i) for i, (path, *_rest) in enumerate(scenario.params)] + list(scenario.ties)
    return [(path.strip("/").split("/")[:-1], path.rsplit("/", 1)[1], i) for path, i in entries]


def scaled_seed(dtype: Any, scale: Any) -> np.ndarray:
    """The gradient Chainer's ``Variable.backward(loss_scale=scale)`` seeds a loss of ``dtype`` with.

    ``ones_like(loss)`` scaled in place, so the scale is rounded to the loss's
    dtype; the gradient of ``sum(g * p)`` is then ``g`` times this, in that
    dtype (a 0-d product too).
    """
    seed = np.ones((), dtype=dtype)
    seed *= scale
    return seed


class ChainerSide(Side):
    """Real Chainer 7.8.1."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        import chainer

        self.chainer = chainer
        self.hooks_module = chainer.optimizer_hooks
        self.params = [
            chainer.Parameter(
                None if i in scenario.lazy else values(shape, dtype, (seed, 1.0, None)),
                name=path.rsplit("/", 1)[1],
            )
            for i, (path, shape, dtype, seed) in enumerate(scenario.params)
        ]
        for i in scenario.lazy:
            self.params[i].cleargrad()  # as a fresh corrmom_ref Parameter: gradient None, not unset
        root = chainer.Chain()
        for parts, name, i in _tree(scenario):
            node = root
            for part in parts:
                child = getattr(node, part, None)
                if child is None:
                    child = chainer.Chain()
                    with node.init_scope():
                        setattr(node, part, child)
                node = child
            with node.init_scope():
                setattr(node, name, self.params[i])
        if scenario.optimizer == custom.NAME:
            optimizer = custom.counting_momentum(
                chainer.UpdateRule, chainer.GradientMethod, chainer.optimizer.HyperparameterProxy
            )
        else:
            optimizer = getattr(chainer.optimizers, scenario.optimizer)
        self.opt = optimizer(lr=scenario.lr, momentum=scenario.momentum)
        self.opt.setup(root)

    def set_grad(self, param: Any, array: np.ndarray | None) -> None:
        if array is None:
            param.cleargrad()
        else:
            param.grad = array

    def update_with_loss(self, grads: dict[int, np.ndarray]) -> None:
        chainer = self.chainer
        opt = self.opt
        params = [self.params[i] for i in sorted(grads)]
        arrays = [grads[i] for i in sorted(grads)]

        class ScriptedLossNode(chainer.FunctionNode):
            """``L = sum_p <g_p, p>``: backward gives ``g_p`` times the loss scale, in ``g_p``'s dtype."""

            def forward(self, inputs: Any) -> Any:
                return (np.zeros((), np.float64),)

            def backward(self, indexes: Any, grad_outputs: Any) -> Any:
                scale = opt._loss_scale  # what Variable.backward multiplied the loss gradient by
                if scale is None:
                    return tuple(chainer.Variable(a.copy()) for a in arrays)
                return tuple(chainer.Variable(np.asarray(a * scaled_seed(a.dtype, scale))) for a in arrays)

        def lossfun(inputs: tuple[Any, ...], *, node: type = ScriptedLossNode) -> Any:
            return node().apply(inputs)[0]

        opt.update(lossfun, tuple(params), node=ScriptedLossNode)  # update(lossfun, *args, **kwds)

    def save(self) -> bytes:
        buffer = io.BytesIO()
        self.chainer.serializers.save_npz(buffer, self.opt)
        return buffer.getvalue()

    def load(self, data: bytes, strict: bool) -> None:
        self.chainer.serializers.load_npz(io.BytesIO(data), self.opt, strict=strict)

    def loss_scale_of(self, param: Any) -> Any:
        return param._loss_scale


class RefSide(Side):
    """corrmom_ref (the module given, so that a test can run a planted copy)."""

    def __init__(self, scenario: Scenario, cr: Any) -> None:
        super().__init__(scenario)
        self.cr = cr
        self.hooks_module = cr.optimizer_hooks
        self.params = [
            cr.Parameter(
                None if i in scenario.lazy else values(shape, dtype, (seed, 1.0, None)),
                name=path.rsplit("/", 1)[1],
            )
            for i, (path, shape, dtype, seed) in enumerate(scenario.params)
        ]
        root = cr.Link()
        for parts, name, i in _tree(scenario):  # registered in Chainer's order (names follow it)
            node = root
            for part in parts:
                if part not in node._links:
                    node.add(part, cr.Link())
                node = getattr(node, part)
            node.add(name, self.params[i])
        if scenario.optimizer == custom.NAME:
            optimizer = custom.counting_momentum(cr.UpdateRule, cr.GradientMethod, cr.HyperparameterProxy)
        else:
            optimizer = getattr(cr, scenario.optimizer)
        self.opt = optimizer(lr=scenario.lr, momentum=scenario.momentum).setup(root)

    def set_grad(self, param: Any, array: np.ndarray | None) -> None:
        param.grad = array

    def update_with_loss(self, grads: dict[int, np.ndarray]) -> None:
        def lossfun(given: dict[Any, np.ndarray], *, scale: float = 1.0) -> Any:
            return self.cr.ScriptedLoss(given)

        self.opt.update(lossfun, {self.params[i]: a for i, a in grads.items()}, scale=1.0)

    def save(self) -> bytes:
        buffer = io.BytesIO()
        self.cr.serializers.save_npz(buffer, self.opt)
        return buffer.getvalue()

    def load(self, data: bytes, strict: bool) -> None:
        self.cr.serializers.load_npz(io.BytesIO(data), self.opt, strict=strict)

    def loss_scale_of(self, param: Any) -> Any:
        return param.loss_scale
