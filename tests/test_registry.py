from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hessdiff.backends import Absent, Backend, Namespace, Variant, registry
from hessdiff.backends.registry import RegistryError, check_backend
from hessdiff.harness.ir import Program, op
from hessdiff.harness.ops import CATALOGUE


def full_table() -> dict[str, Any]:
    """A lowering table with an entry for every catalogue op (all Absent) and a const."""
    table: dict[str, Any] = {name: Absent("planted for a test") for name in CATALOGUE}
    table["const"] = lambda m, value: value
    return table


# --- the real backends ------------------------------------------------------------------


@pytest.mark.parametrize("module", registry.BACKEND_MODULES)
def test_every_backend_module_registers_a_backend_that_passes_the_check(module: str) -> None:
    importlib.import_module(module)
    backends = [b for b in registry.all_backends() if type(b).__module__ == module]
    assert backends, f"{module} is listed in BACKEND_MODULES but registers no backend."
    for backend in backends:
        check_backend(backend)


def test_all_variants_are_named_backend_colon_variant() -> None:
    variants = registry.all_variants()
    names = [v.name for v in variants]
    assert len(names) == len(set(names))
    assert "jax:fwdrev" in names
    for v in variants:
        assert v.name == f"{v.backend.name}:{v.variant}"
        assert v.description


def test_availability_never_raises_and_explains_itself() -> None:
    for backend in registry.all_backends():
        status = backend.availability()
        if status.available:
            assert status.version
        else:
            assert f"pip install 'hessdiff[{backend.extra}]'" in status.reason


def test_a_planted_backend_registers(clean_registry: None, planted: type[Backend]) -> None:
    backend = registry.register(planted())
    assert registry.get_backend("planted") is backend
    assert [v.name for v in registry.all_variants(["planted"])] == ["planted:only"]


# --- what registration rejects ------------------------------------------------------------


def test_missing_method_is_named() -> None:
    class NoToNumpy(Backend):
        name = "no_to_numpy"

        def namespace(self, dtype: str) -> Namespace:
            return Namespace()

        def source_names(self, dtype: str) -> Mapping[str, str]:
            return {}

    with pytest.raises(TypeError, match="to_numpy"):
        NoToNumpy()  # type: ignore[abstract]
    # An instance smuggled past ABC's own check is still refused, naming the gap.
    abstract = NoToNumpy.__abstractmethods__
    NoToNumpy.__abstractmethods__ = frozenset()
    try:
        smuggled = NoToNumpy()
    finally:
        NoToNumpy.__abstractmethods__ = abstract
    with pytest.raises(RegistryError, match=r"NoToNumpy does not implement: to_numpy\."):
        check_backend(smuggled)


@pytest.mark.parametrize(
    "attr", ["name", "distribution", "extra", "modules", "variants", "lowerings", "source_imports"]
)
def test_missing_declaration_is_named(attr: str, planted: type[Backend]) -> None:
    namespace = {k: v for k, v in vars(planted).items() if k not in (attr, "__abstractmethods__")}
    namespace.update(__module__=__name__, __qualname__="Incomplete")
    cls = type("Incomplete", (Backend,), namespace)
    with pytest.raises(RegistryError, match=rf"Incomplete does not declare '{attr}'\."):
        registry.register(cls())


def _IDENTITY(m: Any, f: Any) -> Any:
    return f


def _probes(**probes: Variant) -> Any:
    """A ``probes`` method returning ``probes``."""
    return lambda self: probes


def _broken(planted: type[Backend], **overrides: Any) -> Backend:
    cls = type("Broken", (planted,), {"__module__": __name__, "__qualname__": "Broken", **overrides})
    return cls()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"name": "has space"}, r"name='has space', but it must be an identifier", id="name"),
        pytest.param({"name": "a:b"}, r"name='a:b', but it must be an identifier", id="name-colon"),
        pytest.param({"variants": {}}, r"declares no variants", id="no-variants"),
        pytest.param(
            {"variants": {"a:b": Variant("x", lambda m, f: f)}},
            r"variant 'a:b' is not a valid name",
            id="variant-colon",
        ),
        pytest.param(
            {"lowerings": {k: v for k, v in full_table().items() if k != "const"}},
            r"the lowering table needs a 'const' entry",
            id="no-const",
        ),
        pytest.param(
            {"lowerings": {k: v for k, v in full_table().items() if k not in ("sin", "matmul")}},
            r"no lowering or Absent\(reason\) for ops \['matmul', 'sin'\]",
            id="missing-ops",
        ),
        pytest.param(
            {"lowerings": {**full_table(), "frobnicate": lambda m, a: a}},
            r"lowerings for ops not in the catalogue: \['frobnicate'\]",
            id="unknown-op",
        ),
        pytest.param(
            {"lowerings": {**full_table(), "sin": Absent("  ")}},
            r"Absent for 'sin' gives no reason",
            id="absent-without-reason",
        ),
        pytest.param(
            {"lowerings": {**full_table(), "sin": "jnp.sin"}},
            r"lowering for 'sin' is not callable",
            id="not-callable",
        ),
        pytest.param({"variants": {"v": "jax.hessian"}}, r"variant 'v' is 'jax.hessian', not a Variant",
                     id="not-a-variant"),
        pytest.param(
            {"variants": {"v": Variant("x", _IDENTITY, compiled="yes")}},
            r"variant 'v' has compiled='yes', but it must be True or False",
            id="compiled-not-bool",
        ),
        pytest.param(
            {"variants": {"v": Variant("x", _IDENTITY, batchable=1)}},
            r"variant 'v' has batchable=1, but it must be True or False",
            id="batchable-not-bool",
        ),
        pytest.param(
            {"variants": {"v": Variant("x", _IDENTITY, batchable=True)}},
            r"variant 'v' is batchable, but the backend does not implement batched\(m, hessian\)",
            id="batchable-without-batched",
        ),
        pytest.param(
            {"variants": {"v": Variant("x", _IDENTITY, relation="hvp")}},
            r"variant 'v' declares relation='hvp', but only a probe \(Backend.probes\) declares one",
            id="variant-with-relation",
        ),
        pytest.param(
            {"probes": _probes(p=Variant("x", _IDENTITY, relation="hvps"))},
            r"backend 'planted''s probe 'p' declares relation='hvps', but it must be one of \('hvp', ",
            id="probe-unknown-relation",
        ),
        pytest.param(
            {"probes": _probes(p=Variant("x", _IDENTITY))},
            r"backend 'planted''s probe 'p' declares relation=None, but it must be one of",
            id="probe-without-relation",
        ),
        pytest.param(
            {"probes": _probes(p=Variant("x", _IDENTITY, compiled=None, relation="hvp"))},
            r"probe 'p' has compiled=None, but it must be True or False",
            id="probe-compiled-not-bool",
        ),
        pytest.param(
            {"variants": {"v": Variant("x", _IDENTITY, campaign=True)}},
            r"variant 'v' declares campaign=True, but only a probe \(Backend.probes\) declares it",
            id="variant-with-campaign",
        ),
        pytest.param(
            {"probes": _probes(p=Variant("x", _IDENTITY, relation="laplacian", campaign=True))},
            r"probe 'p' declares campaign=True with relation='laplacian', but only a probe of \('hvp', ",
            id="campaign-probe-not-of-h",
        ),
        pytest.param(
            {"probes": _probes(p=Variant("x", _IDENTITY, relation="hvp", campaign="yes"))},
            r"probe 'p' has campaign='yes', but it must be True or False",
            id="probe-campaign-not-bool",
        ),
        pytest.param(
            {"probes": _probes(only=Variant("x", _IDENTITY, relation="hvp"))},
            r"probe 'only' has the name of a variant",
            id="probe-named-as-variant",
        ),
        pytest.param(
            {"probes": _probes(**{"a,b": Variant("x", _IDENTITY, relation="hvp")})},
            r"probe 'a,b' is not a valid name",
            id="probe-comma",
        ),
        pytest.param(
            {"variants": {"v": Variant("x", _IDENTITY, modes="forward")}},
            r"variant 'v' has modes='forward', but it must be one of \('fwd-over-rev', ",
            id="variant-modes-unknown",
        ),
        pytest.param(
            {"variants": {"v": Variant("x", _IDENTITY, modes="rev-over-rev", machinery=("Tape|x",))}},
            r"variant 'v' has machinery=\('Tape\|x',\), but it must be a tuple of short lower-case words",
            id="variant-machinery-not-a-word",
        ),
    ],
)
def test_bad_declaration_is_rejected(
    overrides: dict[str, Any], message: str, planted: type[Backend]
) -> None:
    with pytest.raises(RegistryError, match=rf"^{__name__}\.Broken: {message}"):
        registry.register(_broken(planted, **overrides))


def test_declared_flags_are_what_the_harness_goes_by(clean_registry: None, planted: type[Backend]) -> None:
    """A batchable variant of a backend with ``batched`` is batched; one not declared so is
    looped, whatever its name (``jit`` included)."""
    calls: list[int] = []

    def batched(self: Backend, m: Any, hessian: Any) -> Any:
        calls.append(1)
        return lambda xs: np.stack([hessian(x) for x in xs])

    backend = registry.register(_broken(
        planted, name="flagged", batched=batched,
        lowerings={**planted.lowerings, "sum": lambda m, a, axis=None, keepdims=False: a.sum()},
        variants={"jit": Variant("x", lambda m, f: lambda x: np.eye(2)),
                  "vmapped": Variant("x", lambda m, f: lambda x: np.eye(2), batchable=True)},
    ))
    program, points = Program(2, (op("input"), op("sum", 0))), np.zeros((3, 2))
    assert registry.get_variant("flagged:jit").hessians(program, points).shape == (3, 2, 2)
    assert calls == []
    assert registry.get_variant("flagged:vmapped").hessians(program, points).shape == (3, 2, 2)
    assert calls == [1]
    assert backend.variants["jit"].compiled is False


def test_duplicate_name_names_both(clean_registry: None, planted: type[Backend]) -> None:
    jax_cls = type(registry.get_backend("jax"))
    with pytest.raises(RegistryError) as info:
        registry.register(_broken(planted, name="jax"))
    message = str(info.value)
    assert f"{jax_cls.__module__}.{jax_cls.__qualname__}" in message
    assert f"{__name__}.Broken" in message
    assert registry.get_backend("jax") is not None and type(registry.get_backend("jax")) is jax_cls


def test_rejected_backend_is_not_registered(clean_registry: None, planted: type[Backend]) -> None:
    with pytest.raises(RegistryError):
        registry.register(_broken(planted, name="half_built", variants={}))
    with pytest.raises(KeyError):
        registry.get_backend("half_built")


# --- look-ups ---------------------------------------------------------------------------


def test_unknown_backend() -> None:
    with pytest.raises(KeyError) as info:
        registry.get_backend("nope")
    assert info.value.args[0].startswith("unknown backend 'nope'; known backends: ")
    assert "jax" in info.value.args[0]


def test_unknown_variant() -> None:
    with pytest.raises(KeyError) as info:
        registry.get_variant("jax:nope")
    assert info.value.args[0].startswith("unknown variant 'jax:nope'; jax has variants: ")
    assert "fwdrev" in info.value.args[0]


def test_unknown_backend_in_variant_spec() -> None:
    with pytest.raises(KeyError, match="unknown backend 'nope'"):
        registry.get_variant("nope:fwdrev")
    with pytest.raises(KeyError, match="unknown backend 'nope'"):
        registry.all_variants(["jax", "nope"])


def test_bare_backend_name_means_its_first_variant() -> None:
    backend = registry.get_backend("jax")
    assert registry.get_variant("jax").variant == next(iter(backend.variants))


def test_all_variants_selects() -> None:
    assert [v.name for v in registry.all_variants(["jax:revrev"])] == ["jax:revrev"]
    jax_all = registry.all_variants(["jax"])
    assert [v.variant for v in jax_all] == list(registry.get_backend("jax").variants)


def test_a_warning_at_import_is_not_absence(tmp_path, monkeypatch, planted: type[Backend]) -> None:
    """A release that warns when imported (equinox 0.13 under jax 0.7) is available, even
    where warnings are errors (this project's pytest settings); the warning is named."""
    (tmp_path / "warns_at_import.py").write_text(
        "import warnings\nwarnings.warn('old API', DeprecationWarning)\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Warns(planted):  # type: ignore[misc, valid-type]
        modules = ("warns_at_import",)

    status = Warns().availability()
    assert status.available, status.reason
    assert "DeprecationWarning importing warns_at_import" in status.reason


def warns_then_hessian(f):
    """jax.hessian, after warning as an old release's solver does (diffrax 0.7.0 under jax 0.5.3)."""
    import warnings

    import jax

    warnings.warn("shape requires ndarray or scalar arguments", DeprecationWarning)
    return jax.hessian(f)


def test_a_warning_during_a_framework_call_is_not_a_crash() -> None:
    """A framework that warns while it computes still computes: with warnings as errors
    (this suite's settings) the variant's outcome is its Hessian, not a crash, and the
    warning is shown."""
    import warnings

    from hessdiff.backends import BackendVariant
    from hessdiff.backends.jax_backend import JaxBackend
    from hessdiff.backends.registry import register, unregister
    from hessdiff.harness.ir import Node, Program, op
    from hessdiff.harness.outcomes import run_variant
    from hessdiff.harness.strategies import Case

    class WarningJax(JaxBackend):
        name = "warningjax"
        variants = {"fwdrev": Variant.calling("jax.hessian after a warning", warns_then_hessian)}

    backend = register(WarningJax())
    try:
        program = Program(1, (Node("input"), op("square", 0), op("sum", 1)))
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("error")
            outcome = run_variant(BackendVariant(backend, "fwdrev"), Case(program, np.array([0.5]), "float64"))
        assert outcome.status == "ok", outcome
        assert outcome.hessian.tolist() == [[2.0]]
        assert [str(w.message) for w in shown] == ["shape requires ndarray or scalar arguments"]
    finally:
        unregister(backend.name)


def test_an_api_the_installed_release_lacks_makes_the_op_unsupported_not_a_crash() -> None:
    """A lowering that calls ``jax.nn.mish`` on jax 0.4.26 (which has none) is the op
    missing from that release: "unsupported", naming the release and the API. An
    AttributeError that is not a lookup in hessdiff's lowering stays a crash."""
    import importlib.metadata

    from hessdiff.backends import BackendVariant
    from hessdiff.backends.registry import register, unregister
    from hessdiff.harness.engine import check_case
    from hessdiff.harness.ir import Node, Program, op
    from hessdiff.harness.strategies import Case
    from planted import OldJaxBackend

    backend = register(OldJaxBackend())
    try:
        program = Program(2, (Node("input"), op("sin", 0), op("sum", 1)))
        result = check_case(Case(program, np.array([0.3, -0.2]), "float64"), [BackendVariant(backend, "fwdrev")])
        outcome = result.outcomes["oldjax:fwdrev"]
        assert outcome.status == "unsupported", outcome
        assert outcome.error.endswith(f"jax {importlib.metadata.version('jax')} has no jax.nn.no_such_activation")

        def framework_code() -> None:  # raised outside backends/: not hessdiff's lookup
            raise AttributeError("module 'jax.nn' has no attribute 'relu7'")

        try:
            framework_code()
        except AttributeError as exc:
            assert backend.missing_api(exc) is None
        assert backend.missing_api(AttributeError("'Tracer' object has no attribute 'foo'")) is None
    finally:
        unregister(backend.name)


def _raised_on_a_backends_line(source: str, exc_type: type[BaseException] = Exception) -> BaseException:
    """Run ``source`` (a function ``call()``) as if it were a line of ``backends/``: its
    code object carries a backends file name, as a lowering's or helper's does."""
    import hessdiff.backends as backends_package

    namespace: dict[str, object] = {}
    helper = str(Path(backends_package.__file__).parent / "mlx_hessians.py")
    exec(compile(source, helper, "exec"), namespace)  # noqa: S102 - a test's own literal
    with pytest.raises(exc_type) as caught:
        namespace["call"]()  # type: ignore[operator]
    return caught.value


def test_an_error_a_c_function_raises_on_a_backends_line_is_the_frameworks_not_hessdiffs() -> None:
    """MLX's "[gather_axis] Cannot calculate JVP" (a ValueError) and its vmap's "Pad vmap is
    NYI" (a RuntimeError) come from C, so the last Python frame is the backend's helper
    that called it: the framework's outcome. What tells it from hessdiff's own ``raise``
    on that line is the instruction the frame stopped at; a RuntimeError from harness/
    stays hessdiff's bug."""
    from hessdiff.harness import outcomes

    called = _raised_on_a_backends_line("def call():\n    return int('a C function refuses this')\n")
    assert isinstance(called, ValueError) and outcomes._from_c_extension(called)
    runtime = _raised_on_a_backends_line("def call():\n    d = {1: 1}\n    for k in d:\n        d[k + 1] = 1\n")
    assert isinstance(runtime, RuntimeError) and outcomes._from_c_extension(runtime)
    for ours in ("def call():\n    raise ValueError('hessdiff checked an argument')\n",
                 "def call():\n    try:\n        int('x')\n    except ValueError as exc:\n"
                 "        raise RuntimeError('hessdiff wraps it') from exc\n"):
        assert not outcomes._from_c_extension(_raised_on_a_backends_line(ours))
    try:
        raise RuntimeError("ours")
    except RuntimeError as exc:  # raised in tests/, not backends/
        assert not outcomes._from_c_extension(exc)


def test_an_index_error_from_a_c_call_on_a_backends_line_is_the_frameworks_a_subscript_is_ours() -> None:
    """C++ bindings turn std::out_of_range into IndexError: MLX 0.21.1's vmap of a JVP
    raised "vector::_M_range_check" from a helper's call, and a 5-minute campaign there
    stopped on it as an internal error. From a call on a backend's line it is the
    framework's; from a subscript there (``shape[3]`` of a short tuple) it stays ours."""
    from hessdiff.harness import outcomes

    called = _raised_on_a_backends_line("def call():\n    return [].pop()\n", IndexError)
    assert outcomes._from_c_extension(called)
    overflow = _raised_on_a_backends_line("def call():\n    import math\n    return math.exp(1000.0)\n",
                                          OverflowError)
    assert outcomes._from_c_extension(overflow)
    subscript = _raised_on_a_backends_line("def call():\n    shape = (2,)\n    return shape[3]\n", IndexError)
    assert not outcomes._from_c_extension(subscript)


def test_an_exception_class_of_hessdiff_is_never_the_frameworks() -> None:
    """Classes of hessdiff itself (every module under the one ``hessdiff`` name) are ours:
    raised from a backend's line they are an internal error, not a framework crash; a
    framework's own class (here a stand-in module ``jaxlib.xla``) is the framework's."""
    from hessdiff.backends import Unsupported
    from hessdiff.harness import outcomes
    from hessdiff.harness.outcomes import HarnessError
    from hessdiff.harness.ir import ProgramError

    for ours in (HarnessError("x"), Unsupported("x"), ProgramError("x"), ValueError("x")):
        assert not outcomes._framework_class(ours), type(ours)
    framework_error = type("XlaRuntimeError", (RuntimeError,), {"__module__": "jaxlib.xla_extension"})
    assert outcomes._framework_class(framework_error("x"))


def test_an_api_missing_from_a_probe_helper_is_the_release_lacking_it() -> None:
    """A probe's helper in ``backends/scenarios`` looking up an API the release lacks (an
    equinox 0.11.0 probe calling eqx.filter_hessian) is the release lacking it, as in a
    backend module's own helper: "unsupported", naming the release, not an internal error."""
    import importlib.metadata

    import hessdiff.backends as backends_package
    from hessdiff.backends import get_backend

    helper_file = Path(backends_package.__file__).parent / "scenarios" / "some_probe.py"
    namespace: dict = {}
    exec(compile("import jax\ndef helper():\n    return jax.nn.no_such_activation\n", str(helper_file), "exec"),
         namespace)
    try:
        namespace["helper"]()
    except AttributeError as exc:
        reason = get_backend("jax").missing_api(exc)
    assert reason == f"jax {importlib.metadata.version('jax')} has no jax.nn.no_such_activation"


@pytest.mark.parametrize(("variant", "route"), [
    ("jax:fwdrev", "fwd-over-rev"),
    ("jax:jit", "fwd-over-rev+compiled"),
    ("equinox:params-filter-hessian", "fwd-over-rev+parameters"),
    ("mlx:revrev", "rev-over-rev"),
    ("mlx:revrev-vmap", "rev-over-rev+vmap"),
    ("mlx:compile-revrev", "rev-over-rev+compiled"),
    ("torch:func-revrev", "rev-over-rev"),
    ("torch:autograd", "rev-over-rev+tape"),
    ("torch:autograd-vec", "rev-over-rev+tape+vmap"),
    ("torch:jit-compile", "jit-compile"),  # a probe that declares no modes: its name
    ("nosuch:thing", "thing"),  # not installed here (a report read back): its name
])
def test_a_variants_route_is_its_modes_then_what_else_it_goes_through(variant: str, route: str) -> None:
    """Findings are signed by route, not by variant: two variants of one route share a
    finding. So every path with rules of its own (the tape against torch.func, a vmap
    batching rule against a loop, the compiler, a structured input's flattening) must
    show in the route, or a fault of one would pass for the other's."""
    assert registry.variant_route(variant) == route


def test_no_two_campaign_variants_of_a_backend_share_a_route_today() -> None:
    """Each campaign variant is a code path of its own now: the routes tell them all
    apart, so signing by route merges no two variants' faults by accident. A variant
    added on an existing route (another spelling of ``jax.hessian``) is meant to share
    its findings; then this pin is the place to say so."""
    for backend in registry.all_backends():
        routes = [registry.variant_route(v.name) for v in registry.campaign_variants([backend.name])]
        assert len(routes) == len(set(routes)), (backend.name, routes)
