"""Which framework APIs a lowering or a Hessian helper calls, and which the installed release lacks.

Regression triage runs hessdiff on releases other than the pinned ones, and an older
release lacks APIs the lowerings call (mlx 0.21 has no ``mx.flip``, mlx 0.25 no
``mx.linalg.det``). Met at run time, such a gap is an ``AttributeError`` in the middle of a
Hessian; known before the campaign starts, it is an op the release does not have: ``Absent``
for that version, so ``hessdiff ops`` and the coverage say so and the search does not chase
it (``Backend.installed_lowerings``).

The APIs are read from the bytecode, not by running anything: a lowering's attribute chains
off its namespace parameter (``m.mx.linalg.det`` -> ``("mx", "linalg", "det")``), and a
helper's chains off the framework modules it imports (``import mlx.core as mx`` ...
``mx.jvp``). Every branch is seen (``norm`` calls ``mx.linalg.norm`` on one and
``mx.reshape`` on another), no argument values need inventing, and the probe costs a few
``getattr`` calls per op, once per installed version.
"""

from __future__ import annotations

import dis
import importlib
import importlib.metadata
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["Chain", "Roots", "api_roots", "apis_of_ops", "first_missing", "helper_chains", "lacking",
           "lowering_chains", "release_of"]

# A dotted attribute chain: its root (a namespace name, or a module path) and the
# attributes read off it in turn.
Chain = tuple[str, ...]

# A backend's namespace names -> (the object, how an emitted script writes it).
Roots = dict[str, tuple[Any, str]]

# Namespaces are built for each of these until one builds (mlx 0.21 has no float64).
_DTYPES = ("float32", "float64")

_LOADS = ("LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE", "LOAD_GLOBAL", "LOAD_NAME")
_ATTRS = ("LOAD_ATTR", "LOAD_METHOD")


def lowering_chains(lowering: Callable[..., Any]) -> set[Chain]:
    """The chains a lowering reads off its first parameter, ``m``: ``{("mx", "flip")}``.

    Nested functions are included (a closure reads ``m`` as a free variable)."""
    code = getattr(lowering, "__code__", None)
    if code is None or code.co_argcount < 1:
        return set()
    root = code.co_varnames[0]
    return {chain for chain in _chains(code, {root: ()}) if chain}


def helper_chains(helper: Callable[..., Any], roots: Iterable[str]) -> set[Chain]:
    """The chains a helper reads off the modules of ``roots`` it imports, written from the
    module's path: ``import mlx.core as mx`` ... ``mx.jvp`` -> ``("mlx.core", "jvp")``."""
    code = getattr(helper, "__code__", None)
    if code is None:
        return set()
    wanted = set(roots)
    aliases = {name: path for name, path in _imports(code) if path[0].split(".")[0] in wanted}
    return {chain for chain in _chains(code, aliases) if len(chain) > 1}


def first_missing(chain: Chain, start: Any, shown: str) -> tuple[str, types.ModuleType] | None:
    """``("mx.flip", mlx.core)`` if reading ``chain[1:]`` off ``start`` stops at a module
    that has no such attribute (``shown`` is how the chain's root is written); None if the
    whole chain resolves, or stops at something that is not a module (an array's or a
    class's attribute is not an API of the release). A module's own ``__getattr__`` hook
    may warn (a deprecation shim): the warning is not an absence, only its AttributeError is.
    """
    current, path = start, [shown]
    for attribute in chain[1:]:
        if not isinstance(current, types.ModuleType):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                current = getattr(current, attribute)
            except AttributeError:
                return ".".join([*path, attribute]), current
            except Exception:  # noqa: BLE001 - a hook that fails otherwise is not an absence
                return None
        path.append(attribute)
    return None


def release_of(module: types.ModuleType, fallback: str) -> str:
    """"mlx 0.21.1": the distribution a module comes from, named by its top package
    (Equinox's lowerings call JAX, so the release that lacks ``jax.nn.mish`` is JAX's)."""
    root = module.__name__.split(".", 1)[0]
    try:
        return f"{root} {importlib.metadata.version(root)}"
    except importlib.metadata.PackageNotFoundError:
        return fallback


def api_roots(backend: Any) -> Roots | None:
    """``backend``'s namespace names -> (object, how a script writes it); None if the
    framework does not import (nothing can be checked then)."""
    if not backend.availability().available:
        return None
    for dtype in _DTYPES:
        try:
            objects, shown = vars(backend.namespace(dtype)), backend.source_names(dtype)
        except Exception:  # noqa: BLE001 - a namespace that cannot be built checks nothing
            continue
        return {name: (obj, shown.get(name, name)) for name, obj in objects.items()}
    return None


def lacking(backend: Any, chains: set[Chain], roots: Roots | None, *, imported: bool = False) -> str | None:
    """The first API of ``chains`` the installed release lacks, as "mlx 0.21.1 has no
    mx.flip"; None if it has them all (or nothing can be checked: ``roots`` is None).
    ``imported``: each chain starts at a module path (a helper's ``import mlx.core as
    mx``), not at a namespace name."""
    if roots is None:
        return None
    for chain in sorted(chains):
        if imported:
            try:
                start: Any = importlib.import_module(chain[0])
            except Exception:  # noqa: BLE001 - not importable here: not this check's to judge
                continue
            shown = chain[0]
        elif chain[0] in roots:
            start, shown = roots[chain[0]]
        else:
            continue
        missing = first_missing(chain, start, shown)
        if missing is not None:
            api, module = missing
            return f"{release_of(module, f'{backend.distribution} {backend.version()}')} has no {api}"
    return None


def apis_of_ops(backend: Any, op_names: Iterable[str]) -> dict[str, str]:
    """Each framework API the ops' lowerings call (every spelling), as an AttributeError
    names it on a release that lacks it (``mlx.core.flip``, ``mlx.core.linalg.det``) -> the
    op: a finding's repro.py, run by ``hessdiff bisect`` on another release, says which op
    that release lacks. Empty if the framework does not import here."""
    roots = api_roots(backend)
    if roots is None:
        return {}
    found: dict[str, str] = {}
    for op_name in op_names:
        entry = backend.lowerings.get(op_name)
        for spelling in getattr(entry, "spellings", (entry,)):
            for chain in lowering_chains(spelling) if callable(spelling) else ():
                if chain[0] not in roots:
                    continue
                current = roots[chain[0]][0]
                for attribute in chain[1:]:
                    if not isinstance(current, types.ModuleType):
                        break
                    found.setdefault(f"{current.__name__}.{attribute}", op_name)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        current = getattr(current, attribute, None)
    return found


def _chains(code: types.CodeType, roots: Mapping[str, tuple[str, ...]]) -> Iterator[Chain]:
    """Each attribute chain in ``code`` (and the code nested in it) that starts at a name
    of ``roots``, written from the root's path: ``roots={"m": ()}`` gives ``("mx", "flip")``
    for ``m.mx.flip``; ``roots={"mx": ("mlx.core",)}`` gives ``("mlx.core", "jvp")``."""
    chain: list[str] | None = None
    for instruction in dis.get_instructions(code):
        if instruction.opname in _ATTRS and chain is not None:
            chain.append(str(instruction.argval))
            continue
        if chain is not None:
            yield tuple(chain)
            chain = None
        if instruction.opname in _LOADS and instruction.argval in roots:
            chain = list(roots[instruction.argval])
    if chain is not None:
        yield tuple(chain)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _chains(const, roots)


def _imports(code: types.CodeType) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(local name, module path) for each import in ``code`` and the code nested in it:
    ``import mlx.core as mx`` -> ``("mx", ("mlx.core",))``, ``from jax import lax`` ->
    ``("lax", ("jax", "lax"))``, ``import jax.numpy`` -> ``("jax", ("jax",))``."""
    fromlist: Any = None
    module: str | None = None
    imported: list[str] = []
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_CONST":
            fromlist = instruction.argval
        elif instruction.opname == "IMPORT_NAME":
            module, imported = str(instruction.argval), []
        elif instruction.opname == "IMPORT_FROM" and module is not None:
            imported.append(str(instruction.argval))
        elif instruction.opname.startswith("STORE_") and module is not None:
            if fromlist is not None and imported:  # from module import name
                yield str(instruction.argval), (module, imported[-1])
            elif imported:  # import a.b as c
                yield str(instruction.argval), (module,)
            else:  # import a.b binds a
                yield str(instruction.argval), (module.split(".")[0],)
            if fromlist is None or not imported:
                module = None
        elif instruction.opname not in ("POP_TOP", "IMPORT_FROM"):
            module = None
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _imports(const)
