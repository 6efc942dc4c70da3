"""Scenarios of the differential fuzz: a model, an optimizer and a sequence of API calls.

A :class:`Scenario` is plain data (tuples, numbers, strings) so that its
``repr`` is Python source: a failing scenario is printed as a script that
replays it (:func:`reproducer`). :func:`scenarios` is the Hypothesis strategy.

Operations (``ops``), each a tuple whose first item names it:

* ``("grads", ((i, spec), ...))``: set parameter ``i``'s gradient to the array
  :func:`values` makes from ``spec`` (``None``: clear it);
* ``("update",)``; ``("update_loss", ((i, spec), ...))``: ``update(lossfun)``,
  the loss giving those gradients (a real ``chainer.Variable`` graph on
  Chainer's side, :class:`corrmom_ref.ScriptedLoss` on ours);
* ``("hp", target, name, value)``: ``opt.<name> = value`` (``target`` is
  ``"opt"``) or parameter ``target``'s rule's override; ``value`` is
  ``(type name, float)`` (``"float"`` or a NumPy scalar type);
* ``("add_hook", level, hook, name, timing)`` / ``("remove_hook", level, name)``:
  ``level`` is ``"opt"`` or a parameter index (its rule's hooks);
* ``("loss_scaling", interval, scale)``: dynamic when ``scale`` is ``None``;
  either may be a ``(type name, number)`` pair;
* ``("fp32", flag)``, ``("enabled", i, flag)``, ``("new_epoch",)``,
  ``("cleargrads",)``;
* ``("init", i)``: give parameter ``i``, created uninitialised (``lazy``),
  its array (Chainer's lazy initialisation; gradients are set only on
  initialised parameters);
* ``("snapshot", source, strict)``: ``source`` (``"ref"`` or ``"chainer"``)
  saves an npz snapshot of its optimizer, and *both* optimizers load it
  (``strict=False``: keys missing from it, such as the state of a rule that
  has not updated yet, are left alone).

Besides the two built-in optimizers a scenario may use ``CountingMomentum``
(:mod:`differential.custom`): a rule written as Chainer users write them,
with ``update_core_cpu`` only and state entries it never declares. A
quarter of the scenarios start with a 0-d float16 parameter, the case where
NumPy 1.x would scale a gradient in float64 (the static scales include some
float16 cannot represent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

DTYPES = ("float16", "float32", "float64")
SHAPES = ((), (3,), (1,), (2, 2), (2, 1, 3), (1, 2, 2))
SCALAR_TYPES = ("float", "float16", "float32", "float64")
LRS = (0.01, 0.1, 0.3, 1.0, 0.001, 0.0, 0.05)
MOMENTA = (0.9, 0.0, 0.5, 0.99, 0.95)
#: Specials planted into the first element of a gradient.
SPECIALS = (None, None, None, None, "nan", "inf", "-inf", "big", "tiny", "zero")


@dataclass(frozen=True)
class Scenario:
    """One fuzz case.

    Attributes:
        optimizer: ``"CorrectedMomentumSGD"``, ``"MomentumSGD"`` or ``"CountingMomentum"``.
        lr, momentum: Constructor arguments.
        params: ``(path, shape, dtype, seed)`` per distinct parameter; the
            path's last part is the attribute name, the others nested links.
        ties: ``(path, i)``: parameter ``i`` registered again at ``path``.
        ops: The operations, as the module docstring describes.
        lazy: Indices of the parameters created uninitialised (array ``None``).
    """

    optimizer: str
    lr: float
    momentum: float
    params: tuple[tuple[str, tuple[int, ...], str, int], ...]
    ties: tuple[tuple[str, int], ...]
    ops: tuple[tuple[Any, ...], ...]
    lazy: tuple[int, ...] = ()


def values(shape: tuple[int, ...], dtype: str, spec: tuple[int, float, str | None]) -> np.ndarray:
    """The array a ``(seed, scale, special)`` spec stands for (both sides get equal copies)."""
    seed, scale, special = spec
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape) * scale
    flat = data.reshape(-1)
    if special is not None and flat.size:
        flat[0] = {
            "nan": math.nan,
            "inf": math.inf,
            "-inf": -math.inf,
            "big": 6.0e4,
            "tiny": 1e-6,
            "zero": 0.0,
        }[special]
    return np.asarray(data, dtype=dtype)


def scalar(value: tuple[str, float] | float | None) -> Any:
    """A ``(type name, number)`` pair as the Python or NumPy scalar it names."""
    if value is None or isinstance(value, (int, float)):
        return value
    kind, number = value
    if kind == "float":
        return float(number)
    if kind == "int":
        return int(number)
    return getattr(np, kind)(number)


# -- the strategy ---------------------------------------------------------------------------

_names = st.sampled_from(("W", "b", "c", "gamma", "x"))
_links = st.sampled_from(("", "l1/", "l2/", "l1/inner/", "l2/deep/er/"))


@st.composite
def _params(draw: st.DrawFn) -> tuple[tuple[str, tuple[int, ...], str, int], ...]:
    count = draw(st.integers(1, 5))
    params, paths = [], set()
    half_scalar = draw(st.integers(0, 3)) == 0  # a 0-d float16 parameter first
    for _ in range(count):
        path = "/" + draw(_links) + draw(_names)
        if path in paths or any(p.startswith(path + "/") or path.startswith(p + "/") for p in paths):
            continue
        paths.add(path)
        if half_scalar and not params:
            params.append((path, (), "float16", draw(st.integers(0, 999))))
            continue
        params.append(
            (path, draw(st.sampled_from(SHAPES)), draw(st.sampled_from(DTYPES)), draw(st.integers(0, 999)))
        )
    return tuple(params)


def _value_spec(scale: float | None = None) -> st.SearchStrategy[tuple[int, float, str | None]]:
    return st.tuples(
        st.integers(0, 9999),
        st.sampled_from((1.0, 0.1, 3.0, 0.01)) if scale is None else st.just(scale),
        st.sampled_from(SPECIALS),
    )


def _hp_value(pool: tuple[float, ...]) -> st.SearchStrategy[tuple[str, float]]:
    return st.tuples(st.sampled_from(SCALAR_TYPES), st.sampled_from(pool))


def _hook(for_optimizer: bool) -> st.SearchStrategy[tuple[Any, ...]]:
    per_param = [
        st.tuples(st.just("WeightDecay"), st.sampled_from((1e-4, 0.01, 0.5))),
        st.tuples(st.just("Lasso"), st.sampled_from((1e-4, 0.01, 0.5))),
        st.tuples(
            st.just("GradientHardClipping"), st.sampled_from((-0.5, -1.0)), st.sampled_from((0.5, 2.0))
        ),
        st.tuples(st.just("GradientLARS"), st.sampled_from((0.01, 1.0)), st.sampled_from((0.0, 1e-3))),
        st.tuples(st.just("GradientNoise"), st.sampled_from((0.01, 0.3))),
    ]
    # the norm hooks twice as likely: their roundings are the delicate part
    per_param.append(per_param[3])
    if for_optimizer:
        clipping = st.tuples(st.just("GradientClipping"), st.sampled_from((0.1, 0.5, 1.0, 10.0)))
        per_param += [clipping, clipping]
    return st.one_of(per_param)


@st.composite
def _add_hook(draw: st.DrawFn, count: int, hook_names: dict[Any, list[str]]) -> tuple[Any, ...]:
    level = draw(st.one_of(st.just("opt"), st.just("opt"), st.integers(0, count - 1)))
    hook = draw(_hook(level == "opt"))
    name = f"{hook[0]}_{draw(st.integers(0, 2))}"
    if name in hook_names.setdefault(level, []):
        return ("new_epoch",)  # both would refuse the name (KeyError), ending the scenario early
    hook_names[level].append(name)
    return ("add_hook", level, hook, name, draw(st.sampled_from(("pre", "post", "auto"))))


@st.composite
def _op(draw: st.DrawFn, count: int, hook_names: dict[Any, list[str]], lazy: set[int]) -> tuple[Any, ...]:
    """One operation; ``lazy`` holds the parameters not initialised yet (an ``init`` op removes one)."""
    index = st.integers(0, count - 1)
    ready = [i for i in range(count) if i not in lazy]
    kind = draw(
        st.sampled_from(
            ("grads",) * 6
            + ("update",) * 6
            + ("update_loss",) * 4
            + ("hp",) * 3
            + ("add_hook",) * 5
            + ("loss_scaling",) * 3
            + ("remove_hook", "fp32", "enabled", "new_epoch", "cleargrads")
            + ("snapshot",) * 2
            + ("init",) * (3 if lazy else 0)
        )
    )
    if kind == "init":
        chosen_lazy = draw(st.sampled_from(sorted(lazy)))
        lazy.discard(chosen_lazy)
        return ("init", chosen_lazy)
    if kind in ("grads", "update_loss"):
        if not ready:
            return ("update",)
        chosen = draw(
            st.lists(
                st.sampled_from(ready),
                min_size=1 if kind == "update_loss" else 0,
                max_size=count,
                unique=True,
            )
        )
        specs = tuple(
            (i, None if kind == "grads" and draw(st.integers(0, 7)) == 0 else draw(_value_spec()))
            for i in sorted(chosen)
        )
        return (kind, specs)
    if kind == "hp":
        name = draw(st.sampled_from(("lr", "momentum")))
        target = draw(st.one_of(st.just("opt"), index))
        return ("hp", target, name, draw(_hp_value(LRS if name == "lr" else MOMENTA)))
    if kind == "add_hook":
        return draw(_add_hook(count, hook_names))
    if kind == "remove_hook":
        levels = [level for level, names in hook_names.items() if names]
        if not levels:
            return ("update",)
        level = draw(st.sampled_from(levels))
        name = draw(st.sampled_from(hook_names[level]))
        hook_names[level].remove(name)
        return ("remove_hook", level, name)
    if kind == "loss_scaling":
        if draw(st.booleans()):
            return (
                "loss_scaling",
                (draw(st.sampled_from(("int", "int32", "int64"))), draw(st.sampled_from((1, 2, 3, 1000)))),
                None,
            )
        scale = draw(st.sampled_from((1.0, 2.0, 3.0, 128.0, 1024.0, 0.5, 65504.0, 1.7, 1000.7)))
        return ("loss_scaling", None, (draw(st.sampled_from(SCALAR_TYPES)), scale))
    if kind == "fp32":
        return ("fp32", draw(st.sampled_from((True, True, True, True, False))))
    if kind == "enabled":
        return ("enabled", draw(index), draw(st.booleans()))
    if kind == "snapshot":
        return (
            "snapshot",
            draw(st.sampled_from(("ref", "chainer"))),
            draw(st.sampled_from((True, False, False))),
        )
    return (kind,)


@st.composite
def scenarios(draw: st.DrawFn, max_ops: int = 30) -> Scenario:
    """A random :class:`Scenario` (the mix issue 11 asks for)."""
    params = draw(_params())
    ties: list[tuple[str, int]] = []
    if draw(st.integers(0, 3)) == 0:
        used = {p[0] for p in params}
        path = "/tied/" + draw(_names)
        if path not in used:
            ties.append((path, draw(st.integers(0, len(params) - 1))))
    hook_names: dict[Any, list[str]] = {}
    # a quarter of the scenarios have parameters that start uninitialised
    lazy = {i for i in range(len(params)) if draw(st.integers(0, 3 * len(params))) == 0}
    lazy_at_start = tuple(sorted(lazy))
    # half of the scenarios start with hooks in place, so that many updates run through them
    first = [draw(_add_hook(len(params), hook_names)) for _ in range(draw(st.sampled_from((0, 0, 1, 2))))]
    ops = first + draw(st.lists(_op(len(params), hook_names, lazy), min_size=6, max_size=max_ops))
    return Scenario(
        optimizer=draw(st.sampled_from(("CorrectedMomentumSGD", "MomentumSGD", "CountingMomentum"))),
        lr=draw(st.sampled_from(LRS)),
        momentum=draw(st.sampled_from(MOMENTA)),
        params=params,
        ties=tuple(ties),
        ops=tuple(ops),
        lazy=lazy_at_start,
    )


def reproducer(scenario: Scenario, message: str) -> str:
    """A short script that replays ``scenario`` in lockstep and shows the divergence."""
    ops = "\n".join(f"        {op!r}," for op in scenario.ops)
    return f"""# differential fuzz reproducer: {message}
# run with Chainer 7.8.1 importable, from the repository root:
#   PYTHONPATH=src:tests python this_file.py
from differential.lockstep import run
from differential.scenario import Scenario

scenario = Scenario(
    optimizer={scenario.optimizer!r},
    lr={scenario.lr!r},
    momentum={scenario.momentum!r},
    params={scenario.params!r},
    ties={scenario.ties!r},
    ops=(
{ops}
    ),
    lazy={scenario.lazy!r},
)
print(run(scenario))
"""
