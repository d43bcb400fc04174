"""The backend registry: backends are checked against the interface when registered.

A backend module calls ``register(MyBackend())`` at import; ``BACKEND_MODULES`` below lists
the modules to import. Registration validates the declaration (name, variants and what
each says it is, probes and the relation each declares, a lowering or an ``Absent`` reason
for every catalogue op) the moment it happens, and a duplicate name is an error that names
both.
"""

from __future__ import annotations

import importlib
import inspect

from hessdiff.backends.base import PROBE_RELATIONS, Backend, BackendVariant, Variant
from hessdiff.backends.lowering import Absent
from hessdiff.harness.ops import CATALOGUE

__all__ = ["RegistryError", "all_backends", "all_variants", "framework_of", "get_backend", "get_variant", "register"]

_BACKENDS: dict[str, Backend] = {}

# The backend modules, imported lazily on first use so that importing hessdiff never
# imports a framework. Adding a backend: one module, one line here.
BACKEND_MODULES: tuple[str, ...] = (
    "hessdiff.backends.jax_backend",
    "hessdiff.backends.equinox_backend",
    "hessdiff.backends.mlx_backend",
    "hessdiff.backends.torch_backend",
)
_loaded = False


class RegistryError(ValueError):
    """A backend does not meet the interface, or its name is taken."""


def register(backend: Backend) -> Backend:
    """Validate ``backend`` against the interface and add it; return it."""
    check_backend(backend)
    if backend.name in _BACKENDS:
        other = type(_BACKENDS[backend.name])
        raise RegistryError(
            f"backend name {backend.name!r} is taken by {other.__module__}.{other.__qualname__}; "
            f"cannot also register {type(backend).__module__}.{type(backend).__qualname__}."
        )
    _BACKENDS[backend.name] = backend
    return backend


def unregister(name: str) -> None:
    """Remove a backend (for tests that register a planted one)."""
    _BACKENDS.pop(name, None)


def check_backend(backend: Backend) -> None:
    """Raise ``RegistryError`` naming the first way ``backend`` misses the interface."""
    cls = type(backend)
    where = f"{cls.__module__}.{cls.__qualname__}"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise RegistryError(f"{where} does not implement: {missing}.")
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
            for flag in ("compiled", "batchable"):
                if not isinstance(getattr(spec, flag), bool):
                    raise RegistryError(f"{where}: {kind} {variant!r} has {flag}={getattr(spec, flag)!r}, "
                                        "but it must be True or False.")
            if spec.batchable and type(backend).batched is Backend.batched:
                raise RegistryError(f"{where}: {kind} {variant!r} is batchable, but the backend does not "
                                    "implement batched(m, hessian).")
    for variant, spec in backend.variants.items():
        if spec.relation is not None:
            raise RegistryError(f"{where}: variant {variant!r} declares relation={spec.relation!r}, but only "
                                "a probe (Backend.probes) declares one.")
    for probe, spec in probes.items():
        if probe in backend.variants:
            raise RegistryError(f"{where}: probe {probe!r} has the name of a variant.")
        if spec.relation not in PROBE_RELATIONS:
            raise RegistryError(f"{where}: backend {name!r}'s probe {probe!r} declares relation="
                                f"{spec.relation!r}, but it must be one of {PROBE_RELATIONS}.")
    if "const" not in backend.lowerings or isinstance(backend.lowerings["const"], Absent):
        raise RegistryError(f"{where}: the lowering table needs a 'const' entry.")
    missing_ops = sorted(set(CATALOGUE) - set(backend.lowerings))
    if missing_ops:
        raise RegistryError(
            f"{where}: no lowering or Absent(reason) for ops {missing_ops}; every catalogue op "
            "needs one."
        )
    unknown = sorted(set(backend.lowerings) - set(CATALOGUE) - {"const"})
    if unknown:
        raise RegistryError(f"{where}: lowerings for ops not in the catalogue: {unknown}.")
    for op_name, lowering in backend.lowerings.items():
        if isinstance(lowering, Absent):
            if not lowering.reason.strip():
                raise RegistryError(f"{where}: Absent for {op_name!r} gives no reason.")
        elif not callable(lowering):
            raise RegistryError(f"{where}: lowering for {op_name!r} is not callable.")


def _load() -> None:
    """Import every backend module once; a module that fails to import fails every call."""
    global _loaded
    if _loaded:
        return
    for module in BACKEND_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RegistryError(f"backend module {module} does not import: {exc}") from exc
    _loaded = True


def all_backends() -> list[Backend]:
    """Every registered backend, in registration order."""
    _load()
    return list(_BACKENDS.values())


def get_backend(name: str) -> Backend:
    _load()
    try:
        return _BACKENDS[name]
    except KeyError:
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
