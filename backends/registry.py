"""The backend registry: backends are checked against the interface when registered.

Built-in backends: a module of ``backends/`` calls ``register(MyBackend())`` at import, and
``BACKEND_MODULES`` below lists the modules to import. Third-party backends are plugins:
an installed distribution declares an entry point in the group ``hessdiff.backends``
(``PLUGIN_GROUP``) whose name is the backend's name and whose value names a ``Backend``
subclass (instantiated with no arguments) or instance; the registry registers it, so the
plugin never calls ``register``. Both kinds are loaded lazily on first use, built-ins
first, and both are validated by ``check_backend`` the moment they register (name,
variants and what each says it is, probes and the relation each declares, a lowering or an
``Absent`` reason for every catalogue op); a duplicate name is an error that names both.

A plugin that fails (it does not import, is not a Backend, misses the interface, or takes
a name already taken) is not registered and does not stop hessdiff: it is kept in
``broken_plugins()`` with a ``PluginError`` naming the entry point and what it lacks, and
the command line reports it. A built-in that fails is hessdiff's own bug and fails every
call.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import inspect
from dataclasses import dataclass
from typing import Any

from hessdiff.backends.backend_variant import BackendVariant
from hessdiff.backends.base import CAMPAIGN_RELATIONS, MODES, PROBE_RELATIONS, Backend, Variant
from hessdiff.backends.lowering import Absent, Spellings
from hessdiff.harness.ops import CATALOGUE

__all__ = [
    "PLUGIN_GROUP",
    "PluginError",
    "PluginSource",
    "RegistryError",
    "all_backends",
    "all_variants",
    "broken_plugins",
    "campaign_variants",
    "framework_of",
    "get_backend",
    "get_variant",
    "variant_modes",
    "variant_route",
    "register",
]

_BACKENDS: dict[str, Backend] = {}
# A word of a variant's machinery (``Variant.machinery``): it goes into signatures.
_ROUTE_WORD = re.compile(r"[a-z][a-z0-9-]*")
# Backend name -> the plugin it came from (built-ins and backends registered by hand have none).
_SOURCES: dict[str, PluginSource] = {}
# Entry point name -> why that plugin is not registered.
_BROKEN: dict[str, PluginError] = {}

# The backend modules, imported lazily on first use so that importing hessdiff never
# imports a framework. Adding a built-in backend: one module, one line here.
BACKEND_MODULES: tuple[str, ...] = (
    "hessdiff.backends.jax_backend",
    "hessdiff.backends.equinox_backend",
    "hessdiff.backends.mlx_backend",
    "hessdiff.backends.torch_backend",
)
# The entry-point group a third-party distribution declares its backends in.
PLUGIN_GROUP = "hessdiff.backends"
_loaded = False


class RegistryError(ValueError):
    """A backend does not meet the interface, or its name is taken."""


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin backend comes from: its entry point and the distribution declaring it."""

    name: str
    value: str
    distribution: str = ""
    version: str = ""

    @classmethod
    def of(cls, entry_point: importlib.metadata.EntryPoint) -> PluginSource:
        dist = entry_point.dist
        if dist is None:
            return cls(entry_point.name, entry_point.value)
        return cls(entry_point.name, entry_point.value, dist.name, dist.version)

    def __str__(self) -> str:
        where = f"distribution {self.distribution} {self.version}, " if self.distribution else ""
        return f"plugin {self.name!r} ({where}{self.value})"


class PluginError(RegistryError):
    """A plugin that could not be registered: ``source`` says which, ``problem`` what it lacks."""

    def __init__(self, source: PluginSource, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def register(backend: Backend) -> Backend:
    """Validate ``backend`` against the interface and add it; return it."""
    return _add(backend, None)


def _add(backend: Backend, source: PluginSource | None) -> Backend:
    check_backend(backend)
    if source is not None and backend.name != source.name:
        raise RegistryError(
            f"its backend is named {backend.name!r}, but the entry point's name must be the backend's name."
        )
    if backend.name in _BACKENDS:
        other = type(_BACKENDS[backend.name])
        owner = _SOURCES.get(backend.name)
        raise RegistryError(
            f"backend name {backend.name!r} is taken by {other.__module__}.{other.__qualname__}"
            f"{f' from {owner}' if owner else ''}; "
            f"cannot also register {type(backend).__module__}.{type(backend).__qualname__}."
        )
    _BACKENDS[backend.name] = backend
    if source is not None:
        _SOURCES[backend.name] = source
    return backend


def unregister(name: str) -> None:
    """Remove a backend (for tests that register a planted one)."""
    _BACKENDS.pop(name, None)
    _SOURCES.pop(name, None)


def check_backend(backend: Backend) -> None:
    """Raise ``RegistryError`` naming the first way ``backend`` misses the interface."""
    cls = type(backend)
    where = f"{cls.__module__}.{cls.__qualname__}"
    _check_implemented(cls)
    for attr in ("name", "distribution", "extra", "modules", "variants", "gradient", "lowerings",
                 "source_imports"):
        if not hasattr(cls, attr):
            raise RegistryError(f"{where} does not declare {attr!r}.")
    name = backend.name
    if not isinstance(name, str) or not name.isidentifier() or ":" in name:
        raise RegistryError(f"{where}: name={name!r}, but it must be an identifier.")
    if not callable(backend.gradient):
        raise RegistryError(f"{where}: gradient must be callable as gradient(m, f).")
    if not backend.variants:
        raise RegistryError(f"{where}: declares no variants.")
    probes = backend.probes()
    for kind, table in (("variant", backend.variants), ("probe", probes)):
        for variant, spec in table.items():
            if not isinstance(variant, str) or not variant or ":" in variant or "," in variant:
                raise RegistryError(f"{where}: {kind} {variant!r} is not a valid name.")
            if not isinstance(spec, Variant):
                raise RegistryError(f"{where}: {kind} {variant!r} is {spec!r}, not a Variant.")
            for flag in ("compiled", "batchable", "campaign"):
                if not isinstance(getattr(spec, flag), bool):
                    raise RegistryError(f"{where}: {kind} {variant!r} has {flag}={getattr(spec, flag)!r}, "
                                        "but it must be True or False.")
            if spec.modes not in ("", *MODES):
                raise RegistryError(f"{where}: {kind} {variant!r} has modes={spec.modes!r}, but it must be one "
                                    f"of {MODES} (or '' where not declared).")
            if not isinstance(spec.machinery, tuple) or not all(
                    isinstance(w, str) and _ROUTE_WORD.fullmatch(w) for w in spec.machinery):
                raise RegistryError(f"{where}: {kind} {variant!r} has machinery={spec.machinery!r}, but it must "
                                    "be a tuple of short lower-case words ('vmap', 'tape').")
            if spec.batchable and type(backend).batched is Backend.batched:
                raise RegistryError(f"{where}: {kind} {variant!r} is batchable, but the backend does not "
                                    "implement batched(m, hessian).")
    for variant, spec in backend.variants.items():
        if spec.relation is not None:
            raise RegistryError(f"{where}: variant {variant!r} declares relation={spec.relation!r}, but only "
                                "a probe (Backend.probes) declares one.")
        if spec.campaign:
            raise RegistryError(f"{where}: variant {variant!r} declares campaign=True, but only a probe "
                                "(Backend.probes) declares it: a variant runs in the campaign anyway.")
    for probe, spec in probes.items():
        if probe in backend.variants:
            raise RegistryError(f"{where}: probe {probe!r} has the name of a variant.")
        if spec.relation not in PROBE_RELATIONS:
            raise RegistryError(f"{where}: backend {name!r}'s probe {probe!r} declares relation="
                                f"{spec.relation!r}, but it must be one of {PROBE_RELATIONS}.")
        if spec.campaign and spec.relation not in CAMPAIGN_RELATIONS:
            raise RegistryError(f"{where}: probe {probe!r} declares campaign=True with relation="
                                f"{spec.relation!r}, but only a probe of {CAMPAIGN_RELATIONS} computes H "
                                "itself, as the campaign judges it.")
    if "const" not in backend.lowerings or isinstance(backend.lowerings["const"], Absent):
        raise RegistryError(f"{where}: the lowering table needs a 'const' entry.")
    missing_ops = sorted(set(CATALOGUE) - set(backend.lowerings))
    if missing_ops:
        raise RegistryError(
            f"{where}: no lowering or Absent(reason) for ops {missing_ops}; every catalogue op "
            "needs one."
        )
    # besides the ops: how constants are made ("const"; "mask", a bool array, optional:
    # without it a program with a mask is Unsupported on the backend)
    unknown = sorted(set(backend.lowerings) - set(CATALOGUE) - {"const", "mask"})
    if unknown:
        raise RegistryError(f"{where}: lowerings for ops not in the catalogue: {unknown}.")
    for op_name, lowering in backend.lowerings.items():
        if isinstance(lowering, Absent):
            if not lowering.reason.strip():
                raise RegistryError(f"{where}: Absent for {op_name!r} gives no reason.")
        elif not callable(lowering) and not isinstance(lowering, Spellings):
            raise RegistryError(f"{where}: lowering for {op_name!r} is not callable.")


def _check_implemented(cls: type[Backend]) -> None:
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise RegistryError(f"{cls.__module__}.{cls.__qualname__} does not implement: {missing}.")


def _load() -> None:
    """Import every built-in backend module once, then register the installed plugins.

    A built-in module that fails to import fails every call; a plugin that fails is
    recorded in ``broken_plugins()`` and the rest go on.
    """
    global _loaded
    if _loaded:
        return
    for module in BACKEND_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RegistryError(f"backend module {module} does not import: {exc}") from exc
    # Set before the plugins load: one that looks a backend up while it loads sees the
    # built-ins rather than loading the plugins again.
    _loaded = True
    for entry_point in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            _load_plugin(entry_point)
        except PluginError as exc:
            _BROKEN[entry_point.name] = exc


def _load_plugin(entry_point: importlib.metadata.EntryPoint) -> Backend:
    """Register the backend ``entry_point`` names and return it; ``PluginError`` if it cannot.

    The entry point's value names a ``Backend`` subclass (instantiated with no arguments)
    or a ``Backend`` instance, and its name must be the backend's name.
    """
    source = PluginSource.of(entry_point)
    try:
        target = entry_point.load()
    except Exception as exc:  # noqa: BLE001 - whatever a third-party import raises, it is the plugin's
        raise PluginError(source, f"does not import: {type(exc).__name__}: {_first_line(exc)}") from exc
    try:
        return _add(_instantiate(target), source)
    except RegistryError as exc:
        raise PluginError(source, str(exc)) from exc


def _instantiate(target: Any) -> Backend:
    """The backend an entry point's object stands for: an instance as is, a subclass instantiated."""
    if isinstance(target, Backend):
        return target
    if not (inspect.isclass(target) and issubclass(target, Backend)):
        what = _describe(target)
        raise RegistryError(
            f"names {what}, but it must name a subclass or an instance of hessdiff.backends.Backend."
        )
    _check_implemented(target)  # before instantiating: ABC's own TypeError would not say it so plainly
    try:
        return target()
    except Exception as exc:  # noqa: BLE001 - a third-party constructor
        raise RegistryError(
            f"{target.__module__}.{target.__qualname__}() failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc


def _describe(target: Any) -> str:
    """"the function foo_pkg.make": what an entry point named, for its error message."""
    if inspect.ismodule(target):
        return f"the module {target.__name__}"
    kind = "class" if inspect.isclass(target) else "function" if inspect.isroutine(target) else ""
    if kind and hasattr(target, "__qualname__"):
        return f"the {kind} {getattr(target, '__module__', '?')}.{target.__qualname__}"
    return f"an object of type {type(target).__name__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def broken_plugins() -> list[PluginError]:
    """The installed plugins that could not be registered, each with why, in load order."""
    _load()
    return list(_BROKEN.values())


def all_backends() -> list[Backend]:
    """Every registered backend, in registration order."""
    _load()
    return list(_BACKENDS.values())


def get_backend(name: str) -> Backend:
    """The backend ``name``; ``KeyError`` with a one-line message if there is none (a broken
    plugin of that name: why it is broken)."""
    _load()
    try:
        return _BACKENDS[name]
    except KeyError:
        if name in _BROKEN:
            raise KeyError(str(_BROKEN[name])) from None
        raise KeyError(
            f"unknown backend {name!r}; known backends: {', '.join(_BACKENDS)}."
        ) from None


def framework_of(variant: str) -> str:
    """The framework whose derivative rules a backend or variant ("equinox:filter_hessian")
    computes with (``Backend.framework``): "jax" for Equinox; an unregistered name is its
    own framework."""
    name = variant.split(":", 1)[0]
    _load()
    backend = _BACKENDS.get(name)
    return (backend.framework or backend.name) if backend is not None else name


def variant_modes(spec: str) -> str:
    """The differentiation modes variant ``spec`` declares (``Variant.modes``); "" for a
    variant that declares none or that this installation does not know (a report read
    back where its backend is not registered)."""
    try:
        return get_variant(spec).spec.modes
    except (KeyError, RegistryError):
        return ""


def variant_route(spec: str) -> str:
    """The code path variant ``spec`` ("torch:autograd-vec") takes to a Hessian, as its
    findings are signed: its modes, then its machinery, "compiled" and a probe's relation,
    joined by "+" ("rev-over-rev+tape+vmap", "fwd-over-rev+compiled",
    "rev-over-rev+parameters"). Two variants of one route are one path through the
    framework's rules, so a fault met in both is one finding; every qualifier keeps apart
    a path with rules of its own (a batching rule, the tape, the compiler, the flattening
    of a structured input). A variant that declares no modes (a probe), or that this
    installation does not know, goes by its name."""
    try:
        found = get_variant(spec).spec
    except (KeyError, RegistryError):
        found = None
    if found is None or not found.modes:
        return spec.partition(":")[2] or spec
    words = [found.modes, *found.machinery]
    if found.compiled:
        words.append("compiled")
    if found.relation is not None:
        words.append(found.relation)
    return "+".join(words)


def get_variant(spec: str) -> BackendVariant:
    """``"jax:fwdrev"`` -> that variant; ``"jax"`` -> the backend's first variant."""
    name, _, variant = spec.partition(":")
    backend = get_backend(name)
    if not variant:
        variant = next(iter(backend.variants))
    if variant not in backend.variants and variant not in backend.probes():
        raise KeyError(
            f"unknown variant {spec!r}; {name} has variants: {', '.join(backend.variants)}."
        )
    return BackendVariant(backend, variant)


def all_variants(backends: list[str] | None = None) -> list[BackendVariant]:
    """Every variant of the named backends (all registered backends by default).

    A name may be ``"jax"`` (all its variants) or ``"jax:fwdrev"`` (that one).
    """
    _load()
    out: list[BackendVariant] = []
    for spec in backends if backends is not None else list(_BACKENDS):
        name, _, variant = spec.partition(":")
        backend = get_backend(name)
        if variant:
            out.append(get_variant(spec))
        else:
            out.extend(BackendVariant(backend, v) for v in backend.variants)
    return out


def campaign_variants(backends: list[str] | None = None) -> list[BackendVariant]:
    """What ``hessdiff run`` checks: ``all_variants``, and for each backend named whole
    (``"jax"``, or every backend by default) its probes declared ``campaign=True`` after
    its variants. A probe named alone (``"jax:params-pytree"``) runs as well."""
    _load()
    out: list[BackendVariant] = []
    for spec in backends if backends is not None else list(_BACKENDS):
        out.extend(all_variants([spec]))
        name, _, variant = spec.partition(":")
        if not variant:
            backend = get_backend(name)
            out.extend(BackendVariant(backend, p) for p, probe in backend.probes().items() if probe.campaign)
    return out
