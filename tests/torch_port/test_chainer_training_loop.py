"""A Chainer training loop and its PyTorch port with :mod:`corrmom_ref.torch` give the same parameters.

The Chainer run (``tools/make_torch_port_fixture.py``, recorded in
``fixtures/chainer_torch_port/``): a 4-8-3 perceptron, 100 steps of
``CorrectedMomentumSGD`` with a warm-up-then-decay learning-rate schedule,
``WeightDecay`` and dynamic loss scaling with two overflowing steps, and a
snapshot after step 50.

* Replayed: PyTorch gets Chainer's gradients as its backward left them, and
  with ``fused=False`` every parameter, buffer, learning rate and scale is
  bitwise Chainer's, uninterrupted and resumed from Chainer's snapshot.
  ``fused=True`` contracts each product into a multiply-add: one rounding
  per product per step, bounded below.
* Ported: PyTorch computes its own gradients (its matmul sums in another
  order), so they differ by float32 roundings; after 100 steps every
  parameter is within ``PORT_ATOL`` of Chainer's.
* Back: PyTorch's snapshot after step 50 loads in real Chainer (when
  ``CORRMOM_CHAINER_PYTHON`` or an importable Chainer is there) and
  Chainer's continuation equals PyTorch's on Chainer's gradients.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import corrmom_ref.torch as crt  # noqa: E402
from corrmom_ref.loss_scaling import NonFiniteGradientWarning  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures" / "chainer_torch_port"
TOOL = Path(__file__).parents[2] / "tools" / "make_torch_port_fixture.py"
PATHS = ["l1/W", "l1/b", "l2/W", "l2/b"]
TORCH_NAMES = {"l1/W": "l1.weight", "l1/b": "l1.bias", "l2/W": "l2.weight", "l2/b": "l2.bias"}
BASE_LR, INTERVAL, DECAY, SNAPSHOT, STEPS = 0.1, 10, 1e-4, 50, 100
#: Measured on x86-64: the ported run ends 3.3e-7 (fused=False) and 1.8e-7 (fused) from
#: Chainer's, whose largest parameter is 1.18; the bound leaves room for other BLAS orders.
PORT_ATOL = 2e-6


def factor(epoch: int) -> float:
    """The schedule of the Chainer run (tools/make_torch_port_fixture.py)."""
    return min(1.0, (epoch + 1) / 10) * (0.1 if epoch >= 60 else 1.0)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(4, 8)
        self.l2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x)))


@pytest.fixture(scope="module")
def run() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "torch_port.npz") as npz:
        return {k: npz[k] for k in npz.files}


def net_with(params: dict[str, np.ndarray]) -> Net:
    net = Net()
    with torch.no_grad():
        for path, name in TORCH_NAMES.items():
            net.get_parameter(name).copy_(torch.from_numpy(params[path]))
    return net


def setup(net: Net, fused: bool, last_epoch: int = -1):
    opt = crt.CorrectedMomentumSGD(net.named_parameters(), lr=BASE_LR, momentum=0.9, fused=fused)
    opt.add_hook(crt.WeightDecay(DECAY))
    if last_epoch >= 0:
        opt.param_groups[0]["initial_lr"] = BASE_LR
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor, last_epoch=last_epoch)
    return opt, sched, crt.LossScaler(interval=INTERVAL)


def train(run, net, opt, sched, scaler, first, last, *, replay, on_step=None):
    """Steps first..last the PyTorch way; with ``replay`` the gradients are Chainer's."""
    for k in range(first, last + 1):
        opt.zero_grad()
        if replay:
            for path, name in TORCH_NAMES.items():
                net.get_parameter(name).grad = torch.from_numpy(run[f"grad/{path}"][k - 1].copy())
        else:
            x, y = torch.from_numpy(run["x"][k - 1]), torch.from_numpy(run["y"][k - 1])
            loss = torch.nn.functional.mse_loss(net(x), y)
            scaler.scale(loss).backward()
        if on_step is not None:
            on_step(k, opt, scaler)
        with warnings.catch_warnings(record=True) as caught:  # the run overflows on purpose:
            warnings.simplefilter("always", NonFiniteGradientWarning)  # asserted here, not printed
            scaler.step(opt)
        warned = [w for w in caught if issubclass(w.category, NonFiniteGradientWarning)]
        assert bool(warned) == opt.last_step_skipped, (
            f"step {k}: skipped {opt.last_step_skipped}, warned {warned}"
        )
        for w in caught:
            if w not in warned:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        scaler.update()
        sched.step()


def params_of(net: Net) -> dict[str, np.ndarray]:
    return {path: net.get_parameter(name).detach().numpy().copy() for path, name in TORCH_NAMES.items()}


def assert_step(run, net, opt, k, *, atol=0.0, key="param"):
    for path, name in TORCH_NAMES.items():
        want = run[f"{key}/{path}"][k - 1]
        got = (
            net.get_parameter(name).detach().numpy()
            if key == "param"
            else opt.state[net.get_parameter(name)]["v"].numpy()
        )
        if atol == 0.0:
            np.testing.assert_array_equal(got, want, err_msg=f"{key} {path} after step {k}")
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=f"{key} {path} after step {k}")


def checker(run):
    """An ``on_step`` that checks the lr and scale before each step; returns it and the list of checked steps."""
    seen = []

    def on_step(k, opt, scaler):
        assert opt.param_groups[0]["lr"] == run["lr"][k - 1], f"lr before step {k}"
        assert scaler.get_scale() == run["scale"][k - 1], f"loss scale before step {k}"
        seen.append(k)

    return on_step, seen


def test_replayed_run_is_bitwise_chainers(run):
    """fused=False on Chainer's gradients: every step's parameters, buffers, lr, scale and t are Chainer's."""
    net = net_with({p: run[f"init/{p}"] for p in PATHS})
    opt, sched, scaler = setup(net, fused=False)
    on_step, seen = checker(run)

    def check(k, opt, scaler):
        on_step(k, opt, scaler)
        if k > 1:
            assert_step(run, net, opt, k - 1)
            assert_step(run, net, opt, k - 1, key="v")
            assert opt.t == run["t"][k - 2]

    train(run, net, opt, sched, scaler, 1, STEPS, replay=True, on_step=check)
    assert_step(run, net, opt, STEPS)
    assert seen == list(range(1, STEPS + 1))
    skipped = [
        k for k in range(2, STEPS + 1) if np.array_equal(run["param/l1/W"][k - 1], run["param/l1/W"][k - 2])
    ]
    assert skipped == [41, 77], "the recorded run should overflow on steps 41 and 77"


def test_replayed_run_fused_within_one_rounding_per_step(run):
    """fused=True: within one float32 rounding of the largest parameter per step (measured: 1.3e-7 after 100)."""
    net = net_with({p: run[f"init/{p}"] for p in PATHS})
    opt, sched, scaler = setup(net, fused=True)
    train(run, net, opt, sched, scaler, 1, STEPS, replay=True)
    magnitude = max(float(np.abs(run[f"param/{p}"]).max()) for p in PATHS)
    bound = STEPS * float(np.finfo(np.float32).eps) * magnitude
    assert_step(run, net, opt, STEPS, atol=bound)


def test_replayed_resume_from_chainers_snapshot_is_bitwise(run):
    """Chainer's snapshot after step 50 loaded into PyTorch continues exactly as Chainer continued.

    Chainer does not save its loss scale: the port sets it from Chainer's
    value at the snapshot, as a resumed PyTorch run loads its scaler's state.
    """
    model = np.load(FIXTURES / "torch_port.model.npz")
    net = net_with({p: model[p] for p in PATHS})
    opt, sched, scaler = setup(net, fused=False, last_epoch=SNAPSHOT - 1)
    crt.load_chainer_snapshot(opt, FIXTURES / "torch_port.optimizer.npz")  # default names: l1.weight <-> l1/W
    assert opt.t == SNAPSHOT
    scaler.load_state_dict(
        {
            "scale": float(run["scale_after_50"]),
            "dynamic": True,
            "interval": INTERVAL,
            "nonfinite_ever": bool(run["nonfinite_ever_after_50"]),
        }
    )
    on_step, seen = checker(run)
    train(run, net, opt, sched, scaler, SNAPSHOT + 1, STEPS, replay=True, on_step=on_step)
    assert seen == list(range(SNAPSHOT + 1, STEPS + 1))
    assert_step(run, net, opt, STEPS)
    assert_step(run, net, opt, STEPS, key="v")
    assert opt.t == STEPS


def test_torch_snapshot_round_trip_is_bitwise(run, tmp_path):
    """PyTorch -> Chainer layout (with the scaler) -> PyTorch after step 50 changes nothing downstream."""
    net = net_with({p: run[f"init/{p}"] for p in PATHS})
    opt, sched, scaler = setup(net, fused=True)
    train(run, net, opt, sched, scaler, 1, SNAPSHOT, replay=True)
    crt.save_chainer_snapshot(tmp_path / "o.npz", opt, scaler=scaler)
    net2 = net_with(params_of(net))
    opt2, sched2, scaler2 = setup(net2, fused=True, last_epoch=SNAPSHOT - 1)
    assert crt.load_chainer_snapshot(opt2, tmp_path / "o.npz", scaler=scaler2)
    train(run, net, opt, sched, scaler, SNAPSHOT + 1, STEPS, replay=True)
    train(run, net2, opt2, sched2, scaler2, SNAPSHOT + 1, STEPS, replay=True)
    for path, a in params_of(net).items():
        np.testing.assert_array_equal(params_of(net2)[path], a, err_msg=path)
    assert (opt2.t, scaler2.get_scale()) == (opt.t, scaler.get_scale())


def test_ported_run_with_own_gradients_within_bound(run):
    """The port computing its own gradients ends within PORT_ATOL of Chainer, skipping the same steps."""
    net = net_with({p: run[f"init/{p}"] for p in PATHS})
    opt, sched, scaler = setup(net, fused=True)
    skipped = []

    def note(k, opt, scaler):
        assert scaler.get_scale() == run["scale"][k - 1], f"loss scale before step {k}"

    def after(k):
        if opt.last_step_skipped:
            skipped.append(k)

    for k in range(1, STEPS + 1):
        train(run, net, opt, sched, scaler, k, k, replay=False, on_step=note)
        after(k)
    assert skipped == [41, 77]
    assert_step(run, net, opt, STEPS, atol=PORT_ATOL)


def _chainer() -> list[str] | None:
    python = os.environ.get("CORRMOM_CHAINER_PYTHON")
    if python:
        return [python, str(TOOL)]
    if importlib.util.find_spec("chainer") is not None:
        return [sys.executable, str(TOOL)]
    return None


def test_torch_snapshot_resumes_in_real_chainer(run, tmp_path):
    """PyTorch's snapshot after step 50, in Chainer's layout, continues in real Chainer as in PyTorch."""
    runner = _chainer()
    if runner is None:
        pytest.skip("real Chainer not available: set CORRMOM_CHAINER_PYTHON to a Python with chainer 7.8.1")
    net = net_with({p: run[f"init/{p}"] for p in PATHS})
    opt, sched, scaler = setup(net, fused=False)
    train(run, net, opt, sched, scaler, 1, SNAPSHOT, replay=True)
    crt.save_chainer_snapshot(tmp_path / "o.npz", opt)  # no scaler: Chainer's scale restarts at 1 anyway
    np.savez(tmp_path / "m.npz", **params_of(net))
    out = tmp_path / "chainer.npz"
    done = subprocess.run(
        [
            *runner,
            "resume",
            str(FIXTURES / "torch_port.npz"),
            str(tmp_path / "m.npz"),
            str(tmp_path / "o.npz"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as npz:
        theirs = {k: npz[k] for k in npz.files}
    # PyTorch continues from the same snapshot with a fresh scaler, on Chainer's resumed gradients
    net2 = net_with(params_of(net))
    opt2, sched2, scaler2 = setup(net2, fused=False, last_epoch=SNAPSHOT - 1)
    crt.load_chainer_snapshot(opt2, tmp_path / "o.npz")
    shifted = {f"grad/{p}": np.concatenate([run[f"grad/{p}"][:SNAPSHOT], theirs[f"grad/{p}"]]) for p in PATHS}
    train({**run, **shifted}, net2, opt2, sched2, scaler2, SNAPSHOT + 1, STEPS, replay=True)
    assert list(theirs["scale"][:3]) == [1.0, 2.0, 4.0], "Chainer's resumed scale should restart at 1"
    for path, p in params_of(net2).items():
        np.testing.assert_array_equal(p, theirs[f"param/{path}"][-1], err_msg=path)
    assert opt2.t == int(theirs["t"][-1]) == STEPS
