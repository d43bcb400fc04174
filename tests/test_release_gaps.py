"""Old and new framework releases (#15): an API a release lacks is an absent op for that
release; an exception the framework raises, even from inside hessdiff's helper code, is
the framework's outcome (unsupported or crash), never an internal error; a campaign's
runners stay in step after hessdiff's own error.

Releases other than the installed ones are stood in for by backends whose lowerings call
APIs no release has (``no_such_api``), so these run in the normal suite.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import pytest

from hessdiff.backends import Absent, BackendVariant, Variant, registry
from hessdiff.backends.api_probe import helper_chains, lowering_chains
from hessdiff.backends.jax_backend import JAX_LOWERINGS, JaxBackend
from hessdiff.backends.lowering import Spellings
from hessdiff.harness.case import Case
from hessdiff.harness.cli import main
from hessdiff.harness.coverage_md import declared_absent
from hessdiff.harness.engine import check_case
from hessdiff.harness.ir import Node, Program, op
from hessdiff.harness.outcomes import HarnessError, run_variant

JAX_RELEASE = f"jax {importlib.metadata.version('jax')}"
SIN_SUM = Program(2, (Node("input"), op("sin", 0), op("sum", 1)))
COS_SUM = Program(2, (Node("input"), op("cos", 0), op("sum", 1)))


def _new_sin(m: Any, a: Any) -> Any:
    return m.jnp.no_such_sine(a)


class ReleaseGapBackend(JaxBackend):
    """JAX as a release that lacks two APIs: ``sin`` is written only with one it lacks
    (absent there), ``cos`` with a newest spelling it lacks and an older one it has."""

    name = "gapjax"
    variants = {"fwdrev": Variant("jax.hessian", lambda m, f: m.jax.hessian(f))}
    lowerings = {
        **JAX_LOWERINGS,
        "sin": _new_sin,
        "cos": Spellings(lambda m, a: m.jax.lax.no_such_cosine(a),
                         lambda m, a: m.jnp.sin(a + 1.5707963267948966)),
    }


def _hessian_via_missing_api(f):
    """A Hessian helper calling an API the installed release lacks."""
    import jax

    return jax.no_such_hessian(f)


class HelperGapBackend(JaxBackend):
    name = "gaphelper"
    variants = {"fwdrev": Variant.calling("a helper calling jax.no_such_hessian", _hessian_via_missing_api)}


@pytest.fixture
def gap_backend(clean_registry: None) -> JaxBackend:
    return registry.register(ReleaseGapBackend())


def test_the_apis_of_a_lowering_are_read_from_every_branch_without_running_it() -> None:
    def norm(m: Any, a: Any, axis: Any, keepdims: bool, ord: int = 2) -> Any:
        return m.mx.linalg.norm(a) if ord == 2 else m.mx.reshape(m.mx.abs(a).max(), [])

    assert lowering_chains(norm) == {("mx", "linalg", "norm"), ("mx", "reshape"), ("mx", "abs")}
    assert helper_chains(_hessian_via_missing_api, {"jax"}) == {("jax", "no_such_hessian")}


def test_an_api_the_release_lacks_makes_the_op_absent_for_that_release(gap_backend: JaxBackend) -> None:
    """The op is Absent in the installed table, naming the release and the API; the
    declared table is untouched (another release may have it)."""
    table = gap_backend.installed_lowerings()
    assert table["sin"] == Absent(f"{JAX_RELEASE} has no jnp.no_such_sine")
    assert gap_backend.lowerings["sin"] is _new_sin
    assert table["exp"] is JAX_LOWERINGS["exp"]
    assert declared_absent("gapjax:fwdrev", "sin") and not declared_absent("gapjax:fwdrev", "cos")
    case = Case(SIN_SUM, np.array([0.3, -0.2]), "float64")
    outcome = run_variant(BackendVariant(gap_backend, "fwdrev"), case)
    assert outcome.status == "unsupported"
    assert outcome.error.endswith(f"{JAX_RELEASE} has no jnp.no_such_sine")


def test_hessdiff_ops_shows_the_op_absent_for_the_installed_release(
        capsys: pytest.CaptureFixture[str], gap_backend: JaxBackend) -> None:
    assert main(["ops"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert f"absent({JAX_RELEASE} has no jnp.no_such_sine)" in rows["sin"]
    assert "absent" not in rows["cos"]


def test_an_older_spelling_runs_where_the_newest_api_is_missing_and_the_repro_shows_it(
        gap_backend: JaxBackend) -> None:
    variant = BackendVariant(gap_backend, "fwdrev")
    x = np.array([0.3, -0.2])
    np.testing.assert_allclose(variant.hessian(COS_SUM, x), np.diag(-np.cos(x)), atol=1e-12)
    source = variant.source(COS_SUM, x)
    assert "jnp.sin(" in source and "no_such_cosine" not in source


def test_a_spelling_none_of_whose_apis_the_release_has_is_absent_naming_the_newest(
        clean_registry: None) -> None:
    class NoSpelling(ReleaseGapBackend):
        name = "nospelling"
        lowerings = {**JAX_LOWERINGS,
                     "cos": Spellings(lambda m, a: m.jnp.no_such_a(a), lambda m, a: m.jnp.no_such_b(a))}

    backend = registry.register(NoSpelling())
    assert backend.installed_lowerings()["cos"] == Absent(f"{JAX_RELEASE} has no jnp.no_such_a")


def test_a_helper_calling_an_api_the_release_lacks_makes_the_variant_unsupported(clean_registry: None) -> None:
    backend = registry.register(HelperGapBackend())
    result = check_case(Case(SIN_SUM, np.array([0.3, -0.2]), "float64"), [BackendVariant(backend, "fwdrev")])
    outcome = result.outcomes["gaphelper:fwdrev"]
    assert outcome.status == "unsupported"
    assert outcome.error.endswith(f"{JAX_RELEASE} has no jax.no_such_hessian")


def test_an_uninstalled_framework_keeps_the_declared_table(clean_registry: None) -> None:
    """Nothing can be checked against a framework that does not import: the declared table
    stands (each Spellings as its newest spelling), so ``hessdiff ops`` still lists it."""

    class Uninstalled(ReleaseGapBackend):
        name = "uninstalled"
        modules = ("no_such_framework_module",)

    backend = registry.register(Uninstalled())
    table = backend.installed_lowerings()
    assert table["sin"] is _new_sin
    assert table["cos"] is ReleaseGapBackend.lowerings["cos"].spellings[0]


def _mlx() -> Any:
    backend = registry.get_backend("mlx")
    if not backend.availability().available:
        pytest.skip(backend.availability().reason)
    return backend


def test_a_framework_error_raised_inside_a_hessian_helper_is_a_crash_not_an_internal_error(
        clean_registry: None) -> None:
    """``hessian_fwdrev`` (hessdiff's helper) calls ``mx.jvp`` of ``mx.grad`` of a function
    that returns a vector: MLX raises a ValueError from C, whose last Python frame is the
    helper's line. That is the framework's outcome."""
    from hessdiff.backends.mlx_backend import MlxBackend
    from hessdiff.backends.mlx_hessians import hessian_fwdrev

    _mlx()

    class VectorMlx(MlxBackend):  # type: ignore[misc]
        name = "vectormlx"
        variants = {"vector": Variant("the Hessian helper on a vector-valued function",
                                      lambda m, f: m.hessian_fwdrev(lambda x: m.mx.stack([f(x), f(x)])),
                                      (hessian_fwdrev,))}

    backend = registry.register(VectorMlx())
    outcome = run_variant(BackendVariant(backend, "vector"), Case(SIN_SUM, np.array([0.3, -0.2]), "float32"))
    assert outcome.status == "crash", outcome
    assert outcome.error.startswith("ValueError")


def test_the_framework_saying_it_cannot_differentiate_from_inside_a_helper_is_unsupported() -> None:
    """MLX's forward mode cannot differentiate through a gather: "[scatter] JVP not yet
    implemented" or "[gather_axis] Cannot calculate JVP", raised inside hessian_fwdrev."""
    backend = _mlx()
    program = Program(3, (Node("input"), op("gather", 0, idx=(2, 0)), op("square", 1), op("sum", 2)))
    case = Case(program, np.array([0.3, -0.2, 0.7]), "float32")
    outcome = run_variant(BackendVariant(backend, "fwdrev"), case)
    assert outcome.status == "unsupported", outcome


def test_runners_stay_in_step_after_hessdiffs_own_error_in_one_of_them() -> None:
    """Two variants share a worker; hessdiff's own error on a case (an int64 point) is
    raised once both are collected, and the next case runs on both: neither refuses its
    submit nor is handed the other's stale reply."""
    from hostile import hostile_variant, squares

    from hessdiff.harness.worker import isolate

    first, second = isolate([hostile_variant("abort"), hostile_variant("hang")], timeout=30.0)
    try:
        with pytest.raises(HarnessError, match="dtype int64"):
            check_case(Case(squares(), np.array([1, 2]), "int64"), [first, second])
        result = check_case(Case(squares(), np.array([-1.0, 0.5]), "float64"), [first, second])
        for runner in (first, second):
            assert np.array_equal(result.outcomes[runner.name].hessian, 2 * np.eye(2))
    finally:
        first.close()
        second.close()


def test_a_reply_nobody_read_is_not_taken_for_the_next_calls() -> None:
    """A batched call's reply left unread (its collection interrupted) is skipped: the
    next one-case call gets its own Outcome, not the stale list."""
    from hostile import hostile_variant, squares

    from hessdiff.harness.worker import IsolatedVariant

    with IsolatedVariant(hostile_variant("abort"), timeout=30.0) as runner:
        points = [np.array([-1.0, 0.5]), np.array([-2.0, 0.5])]
        runner.worker.send(("points", (runner.variant, squares(), points, "float64")))
        outcome = runner.run(Case(squares(), np.array([-1.0, 0.5]), "float64"))
        assert outcome.status == "ok" and np.array_equal(outcome.hessian, 2 * np.eye(2))


def test_a_backend_that_read_its_release_still_pickles_for_a_worker() -> None:
    """The probe caches hold lowerings (lambdas): a backend sent to a worker leaves them."""
    import pickle

    backend = registry.get_backend("jax")
    backend.installed_lowerings()
    copy = pickle.loads(pickle.dumps(backend))
    assert copy.installed_lowerings()["sin"] is backend.installed_lowerings()["sin"]
