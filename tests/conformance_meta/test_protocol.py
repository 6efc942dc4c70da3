"""The adapter protocol: the optional members are typed per capability, and the suite holds adapters to them."""

from __future__ import annotations

import numpy as np
import pytest

from corrmom_conformance import protocol
from corrmom_conformance.adapters import resolve
from corrmom_conformance.adapters.chainer_style import API_CAPABILITIES, NOT_FROM_THE_API


class _PlainSGD:
    """Eq. (9) in NumPy with only the always-required members, plus what the flags add."""

    def __init__(self, params, lr, momentum):
        self.w = {k: np.array(v) for k, v in params.items()}
        self.u = {k: np.zeros_like(v) for k, v in params.items()}
        self.lr, self.m = lr, momentum

    def step(self, grads):
        for k, g in grads.items():
            self.u[k] = self.m * self.u[k] + g
            self.w[k] = self.w[k] - self.lr * self.u[k]

    def params(self):
        return {k: v.copy() for k, v in self.w.items()}


class _WithState(_PlainSGD):
    def state(self):
        return {k: v.copy() for k, v in self.u.items()}


class _Adapter:
    name = "plain"
    version = "0"
    backend = "numpy"
    state_sign = 1.0

    def __init__(self, capabilities, optimizer=_PlainSGD):
        self.capabilities = frozenset(capabilities)
        self._optimizer = optimizer

    def create(self, params, *, lr, momentum):
        return self._optimizer(params, lr, momentum)


def declares_state_without_it():
    return _Adapter({"state", "float64"})


def declares_state_with_it():
    return _Adapter({"state", "float64"}, _WithState)


def declares_nothing_optional():
    return _Adapter({"float64"})


def declares_generic_variant_without_it():
    return _Adapter({"generic_variant"})


def test_an_optimizer_missing_a_member_of_a_declared_capability_is_named():
    with pytest.raises(TypeError) as error:
        resolve(f"{__name__}:declares_state_without_it")
    message = str(error.value)
    assert f"'plain' (from '{__name__}:declares_state_without_it')" in message
    assert "declares capability 'state' but its optimizer lacks state" in message
    assert "corrmom_conformance.protocol.SupportsState" in message


def test_an_adapter_missing_a_member_of_a_declared_capability_is_named():
    with pytest.raises(TypeError) as error:
        resolve(f"{__name__}:declares_generic_variant_without_it")
    message = str(error.value)
    assert "'plain'" in message and "declares capability 'generic_variant'" in message
    assert "lacks generic_variant, fast_path_roundings" in message
    assert "SupportsGenericVariant" in message


def test_undeclared_capabilities_need_nothing():
    assert resolve(f"{__name__}:declares_nothing_optional").name == "plain"
    assert resolve(f"{__name__}:declares_state_with_it").name == "plain"


def test_a_missing_required_member_is_named():
    class NoSign:
        name, version, backend, capabilities = "n", "0", "numpy", frozenset()

        def create(self, params, *, lr, momentum):
            return _PlainSGD(params, lr, momentum)

    with pytest.raises(
        TypeError, match=r"adapter 'n' lacks state_sign \(see corrmom_conformance.protocol.Adapter\)"
    ):
        protocol.check_adapter(NoSign(), "'n'")


def test_every_optional_member_belongs_to_one_capability():
    """The capability protocols name real capabilities, and members of the always-required protocols
    appear in no capability protocol."""
    for capability in [*protocol.OPTIMIZER_PROTOCOLS, *protocol.ADAPTER_PROTOCOLS]:
        assert capability in protocol.CAPABILITIES
    required = set(protocol.members(protocol.Optimizer)) | set(protocol.members(protocol.Adapter))
    assert required == {
        "step",
        "params",
        "name",
        "version",
        "backend",
        "capabilities",
        "state_sign",
        "create",
    }
    for proto in [*protocol.OPTIMIZER_PROTOCOLS.values(), *protocol.ADAPTER_PROTOCOLS.values()]:
        assert protocol.members(proto) and not set(protocol.members(proto)) & required
    assert protocol.members(protocol.SupportsGenericVariant) == ("generic_variant", "fast_path_roundings")
    assert protocol.members(protocol.DeclaresDeviations) == ("expected_deviations",)


def test_the_chainer_api_capabilities_derive_from_the_protocol_list():
    assert set(protocol.CAPABILITIES) == API_CAPABILITIES | NOT_FROM_THE_API
    assert not API_CAPABILITIES & NOT_FROM_THE_API
