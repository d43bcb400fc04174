"""The eager variants' batched screens: compiled with LLVM's optimisations off where JAX
takes the option, the plain jit where it does not, and equal to the eager Hessians."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from hessdiff.backends import get_variant  # noqa: E402
from hessdiff.backends import jax_backend  # noqa: E402
from hessdiff.backends.jax_backend import SCREEN_COMPILER_OPTIONS, screen_jit  # noqa: E402
from hessdiff.harness.parse import parse_program  # noqa: E402


@pytest.mark.parametrize("name", ["jax:fwdrev", "equinox:filter_hessian", "jax:jit"])
def test_a_batched_screen_gives_each_points_eager_hessian(name: str) -> None:
    if name.startswith("equinox"):
        pytest.importorskip("equinox")
    variant = get_variant(name)
    program = parse_program("v1 = tanh(x); v2 = mul(v1, x); v3 = logsumexp(v2, axis=-1, keepdims=False)", 3)
    points = np.random.default_rng(0).normal(size=(5, 3))
    batch = variant.hessians(program, points)
    for point, h in zip(points, batch):
        np.testing.assert_allclose(h, variant.hessian(program, point), rtol=1e-12, atol=1e-15)


class _Jax:
    """A stand-in for the jax module: records what jit was asked for."""

    def __init__(self, takes_options: bool = True, refuses: bool = False) -> None:
        self.takes_options, self.refuses, self.calls = takes_options, refuses, []

    def jit(self, fn, **options):
        if options and not self.takes_options:
            raise TypeError("jit() got an unexpected keyword argument 'compiler_options'")
        self.calls.append(options)

        def compiled(*args):
            if options and self.refuses:
                raise RuntimeError(f"INVALID_ARGUMENT: No such compile option: '{next(iter(SCREEN_COMPILER_OPTIONS))}'")
            return ("optimisations off" if options else "default", fn(*args))

        return compiled


def test_the_screen_compiles_with_the_options_where_jax_takes_them(monkeypatch) -> None:
    monkeypatch.setattr(jax_backend, "_screen_options_work", True)
    fake = _Jax()
    assert screen_jit(fake, lambda x: x + 1)(1) == ("optimisations off", 2)
    assert {"compiler_options": SCREEN_COMPILER_OPTIONS} in fake.calls


def test_an_older_jit_or_an_xla_without_the_option_compiles_as_the_default(monkeypatch) -> None:
    monkeypatch.setattr(jax_backend, "_screen_options_work", True)
    assert screen_jit(_Jax(takes_options=False), lambda x: x + 1)(1) == ("default", 2)
    refusing = _Jax(refuses=True)
    assert screen_jit(refusing, lambda x: x + 1)(1) == ("default", 2)
    assert jax_backend._screen_options_work is False  # asked once, not at every program
    assert screen_jit(refusing, lambda x: x * 3)(2) == ("default", 6)


def test_a_framework_error_in_the_screen_is_not_taken_for_a_refused_option(monkeypatch) -> None:
    monkeypatch.setattr(jax_backend, "_screen_options_work", True)

    def fails(x):
        raise ValueError("the framework cannot do this")

    with pytest.raises(ValueError, match="cannot do this"):
        screen_jit(_Jax(), fails)(1)
    assert jax_backend._screen_options_work is True
