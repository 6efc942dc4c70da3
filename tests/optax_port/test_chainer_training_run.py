"""corrmom_ref.optax against a real Chainer 7.8.1 training run (``tests/fixtures/chainer_training``).

The fixture (``tools/make_chainer_training_fixture.py``) trains a small MLP
for 100 steps in Chainer with CorrectedMomentumSGD, a step schedule of the
learning rate, dynamic loss scaling (two overflowing steps) and a snapshot
after step 50 from which a fresh Chainer optimizer resumes.

* Same arithmetic: fed the scaled gradients Chainer's backward produced, the
  optax transformation run op by op (no fusion) gives Chainer's parameters,
  loss scales and counters **bitwise** at every step, uninterrupted and
  resumed from Chainer's snapshot, and saves Chainer's snapshot back.
* Jitted, XLA may fuse each product into a multiply-add (one rounding fewer
  per product): parameters within ``eps * k * (|p| + 1)`` after step ``k``
  (``eps`` float32's machine epsilon).
* The JAX port (its own forward and ``jax.grad`` of the scaled loss, in one
  jitted step) differs from Chainer's BLAS-based backward by rounding only:
  within ``1e-5 * (|p| + 1)`` per element over all 100 steps (measured worst
  case 2.2e-7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import corrmom_ref.optax as co  # noqa: E402
from corrmom_ref.loss_scaling import NonFiniteGradientWarning  # noqa: E402

jax.config.update("jax_enable_x64", True)  # the loss scale in float64, as Chainer's Python float

FIXTURE = Path(__file__).parents[1] / "fixtures" / "chainer_training"
PATHS = ("/l1/W", "/l1/b", "/l2/W", "/l2/b")
SNAPSHOT_AFTER = 50
EPS = float(np.finfo(np.float32).eps)
PORT_RTOL = 1e-5


@pytest.fixture(scope="module")
def rec() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "mlp.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def schedule() -> optax.Schedule:
    """The fixture's schedule, the optax way (power-of-two factors: exact in any precision)."""
    return optax.piecewise_constant_schedule(0.0125, {2: 2.0, 4: 2.0, 40: 0.5, 80: 0.5})


def transformation() -> optax.GradientTransformation:
    return co.loss_scaling(co.corrected_momentum_sgd(schedule(), momentum=0.9), interval=10)


def tree(values: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for path, v in values.items():
        layer, name = path.strip("/").split("/")
        out.setdefault(layer, {})[name] = jnp.asarray(v)
    return out


def flat(params: dict) -> dict[str, np.ndarray]:
    return {p: np.asarray(params[p.split("/")[1]][p.split("/")[2]]) for p in PATHS}


def recorded(rec: dict, prefix: str, what: str, row: int) -> dict[str, np.ndarray]:
    return {p: rec[f"{prefix}/{what}/{p}"][row] for p in PATHS}


def chainer_params(file: Path) -> dict:
    with np.load(file, allow_pickle=False) as npz:
        return tree({p: npz[p.lstrip("/")] for p in PATHS})


def replay(rec, params, state, prefix, steps, update, check) -> tuple[dict, object]:
    for row, step in enumerate(steps):
        grads = tree(recorded(rec, prefix, "grad", row))
        params, state = update(params, state, grads)
        check(prefix, row, step, params, state)
    return params, state


def eager_update(tx):
    def update(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return update


def assert_bitwise(rec):
    def check(prefix, row, step, params, state):
        got = flat(params)
        for p in PATHS:
            np.testing.assert_array_equal(
                got[p], rec[f"{prefix}/param/{p}"][row], err_msg=f"{p} after step {step} ({prefix})"
            )
        scaling = co.find_loss_scaling_state(state)
        assert float(scaling.scale) == float(rec[f"{prefix}/scale"][row]), f"loss scale after step {step}"
        assert int(scaling.count) == int(rec[f"{prefix}/t"][row]), f"t after step {step}"
        assert int(scaling.inner_state.count) == int(rec[f"{prefix}/rule_t"][row]), (
            f"rule t after step {step}"
        )

    return check


def test_schedule_is_the_fixtures(rec) -> None:
    rule_t_before = np.concatenate([[0], rec["run/rule_t"][:-1]])
    assert [float(schedule()(k)) for k in rule_t_before] == rec["run/lr"].tolist()


def test_op_by_op_is_bitwise_chainer(rec) -> None:
    """Uninterrupted run, 100 steps: parameters, loss scale, t and rule t equal Chainer's exactly."""
    tx = transformation()
    params = tree({p: rec[f"init/{p}"] for p in PATHS})
    with pytest.warns(NonFiniteGradientWarning, match="/l1/W"):
        replay(rec, params, tx.init(params), "run", range(1, 101), eager_update(tx), assert_bitwise(rec))


def test_chainer_snapshot_resumes_bitwise(rec) -> None:
    """Chainer's snapshot after step 50 loads into the optax state; steps 51-100 are Chainer's resumed run."""
    tx = transformation()
    params = chainer_params(FIXTURE / "mlp.model.npz")
    state = co.load_chainer_snapshot(FIXTURE / "mlp.optimizer.npz", tx.init(params))
    assert int(co.find_loss_scaling_state(state).count) == rec["run/t"][SNAPSHOT_AFTER - 1]
    assert float(co.loss_scale(state)) == 1.0  # Chainer saves no scale: it restarts at 1
    with pytest.warns(NonFiniteGradientWarning, match="/l1/W") as caught:
        replay(rec, params, state, "resumed", range(51, 101), eager_update(tx), assert_bitwise(rec))
    assert any(getattr(w.message, "iteration", None) == 70 for w in caught)


def _save_ours_after_snapshot_step(rec, path) -> None:
    """Replay the recorded run to step 50 (its overflow warned) and save our snapshot to ``path``."""
    tx = transformation()
    params = tree({p: rec[f"init/{p}"] for p in PATHS})
    first = {k: v[:SNAPSHOT_AFTER] for k, v in rec.items() if k.startswith("run/")}
    with pytest.warns(NonFiniteGradientWarning):
        _, state = replay(
            first, params, tx.init(params), "run", range(1, 51), eager_update(tx), lambda *a: None
        )
    co.save_chainer_snapshot(path, state)


def test_saved_snapshot_is_chainers(rec, tmp_path) -> None:
    """After step 50 our snapshot holds Chainer's keys with Chainer's values (plus the loss scale)."""
    _save_ours_after_snapshot_step(rec, tmp_path / "ours.npz")
    with np.load(tmp_path / "ours.npz") as ours, np.load(FIXTURE / "mlp.optimizer.npz") as theirs:
        assert set(theirs.files) <= set(ours.files)
        assert set(ours.files) - set(theirs.files) == {
            "loss_scaling.dynamic",
            "loss_scaling.interval",
            "loss_scaling.nonfinite_ever",
            "loss_scaling.scale",
        }
        for key in theirs.files:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
            assert ours[key].dtype.kind == theirs[key].dtype.kind, key
        assert float(ours["loss_scaling.scale"]) == float(rec["run/scale"][SNAPSHOT_AFTER - 1])


def within(rtol_of_step):
    def check(prefix, row, step, params, state):
        got = flat(params)
        for p in PATHS:
            want = rec_holder["rec"][f"{prefix}/param/{p}"][row].astype(np.float64)
            err = np.abs(got[p].astype(np.float64) - want)
            assert np.all(err <= rtol_of_step(step) * (np.abs(want) + 1)), (
                f"{p} after step {step} ({prefix}): off by {err.max():.3g}"
            )

    return check


rec_holder: dict = {}


def jitted_update(tx):
    return jax.jit(eager_update(tx))


def test_jitted_within_one_rounding_per_product(rec) -> None:
    """Jitted, XLA may fuse products into multiply-adds: within eps * k of Chainer after step k."""
    rec_holder["rec"] = rec
    tx = transformation()
    params = tree({p: rec[f"init/{p}"] for p in PATHS})
    with pytest.warns(NonFiniteGradientWarning):
        replay(
            rec, params, tx.init(params), "run", range(1, 101), jitted_update(tx), within(lambda k: EPS * k)
        )


def mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["l1"]["W"].T + params["l1"]["b"])
    return jnp.mean((h @ params["l2"]["W"].T + params["l2"]["b"] - y) ** 2)


def port_step(tx):
    @jax.jit
    def step(params, state, x, y):
        scale = co.loss_scale(state)
        grads = jax.grad(lambda p: mlp_loss(p, x, y) * scale.astype(jnp.float32))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def test_jax_port_follows_chainer(rec) -> None:
    """The JAX port with its own backward: uninterrupted 100 steps, then resumed from Chainer's snapshot."""
    rec_holder["rec"] = rec
    tx = transformation()
    step = port_step(tx)
    check = within(lambda k: PORT_RTOL)
    worst = 0.0
    for prefix, steps, params in (
        ("run", range(1, 101), tree({p: rec[f"init/{p}"] for p in PATHS})),
        ("resumed", range(51, 101), chainer_params(FIXTURE / "mlp.model.npz")),
    ):
        state = tx.init(params)
        if prefix == "resumed":
            state = co.load_chainer_snapshot(FIXTURE / "mlp.optimizer.npz", state)
        with pytest.warns(NonFiniteGradientWarning):
            for row, k in enumerate(steps):
                params, state = step(
                    params, state, jnp.asarray(rec["x"][k - 1]), jnp.asarray(rec["y"][k - 1])
                )
                check(prefix, row, k, params, state)
                assert float(co.loss_scale(state)) == float(rec[f"{prefix}/scale"][row]), f"scale after {k}"
                got = flat(params)
                for p in PATHS:
                    want = rec[f"{prefix}/param/{p}"][row].astype(np.float64)
                    worst = max(worst, float(np.max(np.abs(got[p] - want) / (np.abs(want) + 1))))
    print(f"JAX port vs Chainer: worst |diff| / (|p| + 1) = {worst:.3g}")


_NO_FMA_SCRIPT = """
import sys, warnings
sys.path.insert(0, {tests!r})
import numpy as np
import test_chainer_training_run as T
warnings.simplefilter("ignore")
rec = T.rec_holder["rec"] = dict(np.load(T.FIXTURE / "mlp.npz"))
tx = T.transformation()
params = T.tree({{p: rec[f"init/{{p}}"] for p in T.PATHS}})
T.replay(rec, params, tx.init(params), "run", range(1, 101), T.jitted_update(tx), T.assert_bitwise(rec))
print("bitwise")
"""


@pytest.mark.skipif(
    __import__("platform").machine().lower() not in ("x86_64", "amd64"),
    reason="XLA_FLAGS=--xla_cpu_max_isa is x86",
)
def test_jitted_without_fma_is_bitwise_chainer() -> None:
    """Kept from emitting FMA (``XLA_FLAGS=--xla_cpu_max_isa=AVX``), the jitted step is Chainer's bitwise."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_cpu_max_isa=AVX")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(co.__file__).parents[2]), env.get("PYTHONPATH", "")])
    script = _NO_FMA_SCRIPT.format(tests=str(Path(__file__).parent))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "bitwise" in done.stdout, done.stderr[-3000:]


_CHAINER_RESUME_SCRIPT = """
import sys, warnings
sys.path.insert(0, {tools!r})
import numpy as np, chainer
import make_chainer_training_fixture as F
warnings.simplefilter("ignore")
rec = dict(np.load({fixture!r}))
init = {{p: rec[f"init/{{p}}"] for p in F.PATHS}}
model = F.MLP(init)
opt = F.make_optimizer(model)
chainer.serializers.load_npz({model!r}, model)
chainer.serializers.load_npz({snapshot!r}, opt)
out = F.train(model, opt, rec["x"], rec["y"], range(F.SNAPSHOT_AFTER + 1, F.STEPS + 1), "resumed")
np.savez({out!r}, **out)
"""


def test_our_snapshot_resumes_in_chainer(rec, tmp_path) -> None:
    """Real Chainer loads the snapshot saved here after step 50 and continues exactly as from its own."""
    import os
    import subprocess

    python = os.environ.get("CORRMOM_CHAINER_PYTHON")
    if not python:
        pytest.skip("real Chainer not available: set CORRMOM_CHAINER_PYTHON to a Python with chainer 7.8.1")
    _save_ours_after_snapshot_step(rec, tmp_path / "ours.npz")
    script = _CHAINER_RESUME_SCRIPT.format(
        tools=str(Path(__file__).parents[2] / "tools"),
        fixture=str(FIXTURE / "mlp.npz"),
        model=str(FIXTURE / "mlp.model.npz"),
        snapshot=str(tmp_path / "ours.npz"),
        out=str(tmp_path / "chainer.npz"),
    )
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "chainer.npz") as theirs:
        for p in PATHS:
            np.testing.assert_array_equal(theirs[f"resumed/param/{p}"], rec[f"resumed/param/{p}"], err_msg=p)
