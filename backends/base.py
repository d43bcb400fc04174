"""The adapter interface every framework backend implements: what a backend declares.

A backend module subclasses ``Backend`` once: it says how to import its framework, how
to lower each catalogue op (its lowering table), and how each of its *variants* computes
a Hessian (fwd-over-rev, rev-over-rev, jit, ...). The harness only ever talks to
``BackendVariant`` (``hessdiff.backends.backend_variant``): ``hessian(program, x)``,
``gradient``, ``value`` and ``source``, run through what a backend declares here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import inspect
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hessdiff.backends.api_probe import api_roots, helper_chains, lacking, lowering_chains
from hessdiff.backends.lowering import (
    Absent, Lowering, Namespace, SourceNamespace, Spellings, Src, array_literal, expression_text, flags, render,
    unparenthesized,
)
from hessdiff.harness.ir import Program, boolean_array, integer_array, integer_dtype, literal_of, python_number

__all__ = [
    "Availability",
    "Variant",
    "Backend",
    "BackendUnavailable",
    "DTYPES",
    "CAMPAIGN_RELATIONS",
    "MODES",
    "PROBE_RELATIONS",
    "Unsupported",
]

DTYPES = ("float32", "float64")


# "module 'jax.nn' has no attribute 'mish'": an API the installed release lacks.
_MISSING_ATTRIBUTE = re.compile(r"module '([\w.]+)' has no attribute '(\w+)'")
_BACKENDS_DIR = Path(__file__).resolve().parent
# Where a backend keeps what the installed release has (``installed_lowerings``,
# ``variant_gap``), once per process: never pickled.
_PROBE_CACHES = ("_installed_lowerings", "_variant_gaps")


class Unsupported(Exception):
    """This variant cannot run this program: a documented framework limitation.

    Distinct from a crash (a framework error on a program it claims to support) and from
    a wrong answer; the diff engine reports it as its own outcome.
    """


class BackendUnavailable(Exception):
    """The backend's framework is not installed; the message says what to install."""


@dataclass(frozen=True)
class Availability:
    available: bool
    version: str
    reason: str = ""


# The relations a probe may declare (``Variant.relation``): what its matrix is, so
# ``hessdiff.harness.relations`` knows what to compare it with. ``probe_relations`` has one
# check for each (a test holds the two together); registration rejects any other name.
PROBE_RELATIONS: tuple[str, ...] = (
    "hvp",  # the Hessian assembled from the framework's Hessian-vector products
    "laplacian",  # the PINN Laplacian's per-axis second derivatives, on the diagonal
    "vmap",  # the Hessian mapped over a batch of points
    "custom_rules",  # the Hessian through a custom differentiation rule
    "parameters",  # a model's parameter Hessian
    "neural_ode",  # the Hessian of a fixed-step Euler Neural-ODE loss (scenarios.ode_problem)
    "neural_ode_adaptive",  # the same ODE's loss from an adaptive solver
    "compiled",  # the Hessian under the framework's compiler
)
# The relations whose probe computes the program's Hessian H itself (no diagonal, no
# transformed loss): such a probe may also run in the campaign beside the backend's
# variants (``Variant.campaign``), judged against the oracle's H like any variant.
CAMPAIGN_RELATIONS: tuple[str, ...] = ("hvp", "vmap", "custom_rules", "parameters", "compiled")
# The compositions of differentiation modes a variant may declare (``Variant.modes``),
# the outer transform first: jax.hessian is forward-over-reverse.
MODES: tuple[str, ...] = ("fwd-over-rev", "rev-over-rev", "fwd-over-fwd", "rev-over-fwd")


@dataclass(frozen=True)
class Variant:
    """One way a framework computes a Hessian.

    ``compose(m, f)`` returns the Hessian function of ``f``, written against the backend's
    namespace ``m`` like a lowering, so it both runs and prints (``jax.hessian(f)``).
    ``helpers`` are plain module-level functions the composition names (``m.helper``);
    an emitted script carries their source, and the module-level constants they read.

    What the variant is, declared with it and checked when its backend registers:
        compiled: it runs under the framework's compiler (``jax.jit``, ``mx.compile``), so
            the ``transforms`` relation compares it with the eager reference and the
            ``modes`` relation leaves it out.
        batchable: ``Backend.batched`` can map its Hessian function over a batch of points
            (``BackendVariant.hessians``); otherwise the points are looped.
        relation: for a probe (``Backend.probes``), the relation that checks it, one of
            ``PROBE_RELATIONS``; ``None`` for a campaign variant.
        campaign: for a probe whose relation is one of ``CAMPAIGN_RELATIONS``, that
            ``hessdiff run`` also runs it beside the backend's variants
            (``registry.campaign_variants``): a way of reaching H cheap enough to check on
            every generated program, such as a Hessian in a structured input.
        modes: the differentiation modes it composes, outer over inner, one of ``MODES``
            ("fwd-over-rev" for ``jax.hessian``); "" where not declared. A root cause that
            shows in the forward-over-forward variant only is a forward-mode rule's, one in
            every variant a rule both modes share: reports list the modes beside the variants.
        machinery: what else its Hessian goes through that a variant of the same modes
            does not, as short words: "vmap" (the basis rows batched by the framework's
            vmap, where a sibling loops), "tape" (torch.autograd's graph, where a sibling
            uses torch.func's transforms). With "compiled" and a probe's relation it makes
            the variant's route (``registry.variant_route``), which signs its findings:
            two variants of one route are one code path, and one fault in it is one finding.
    """

    description: str
    compose: Callable[[Any, Any], Any]
    helpers: tuple[Callable[..., Any], ...] = ()
    _: KW_ONLY
    compiled: bool = False
    batchable: bool = False
    relation: str | None = None
    campaign: bool = False
    modes: str = ""
    machinery: tuple[str, ...] = ()

    @classmethod
    def calling(cls, description: str, helper: Callable[..., Any], *more: Callable[..., Any],
                compiled: bool = False, batchable: bool = False, relation: str | None = None,
                campaign: bool = False, modes: str = "", machinery: tuple[str, ...] = ()) -> Variant:
        """The variant whose Hessian function is ``helper(f)``: a module-level function
        the backend (and an emitted script) carries, with the helpers it calls in turn."""
        name = helper.__name__
        return cls(description, lambda m, f: getattr(m, name)(f), (*more, helper),
                   compiled=compiled, batchable=batchable, relation=relation, campaign=campaign, modes=modes,
                   machinery=machinery)


class Backend(ABC):
    """One framework. Subclasses are final and registered with ``hessdiff.backends.registry``.

    Class attributes a backend declares:
        name: the backend's name ("jax").
        distribution: the PyPI distribution whose version is reported ("jax").
        extra: the hessdiff extra that installs it (``pip install 'hessdiff[jax]'``).
        modules: the modules it imports; any missing makes the backend unavailable.
        variants: variant name -> ``Variant`` (the campaign's; none declares a relation).
        gradient: ``gradient(m, f)``, the framework's gradient of ``f``.
        lowerings: catalogue op name -> lowering, ``Spellings(newest, *older)`` for an op
            older releases write differently, or ``Absent(reason)``; what the installed
            release runs is ``installed_lowerings()``.
        source_imports: the import lines of an emitted script.
    """

    name: ClassVar[str]
    # The framework whose derivative rules compute this backend's Hessians (Equinox's are
    # JAX's); "" is the backend's own name. The judge goes by it: a rule scale of that
    # framework's formulas (harness.ops.RuleScale), its accuracy (harness.tolerance), and
    # which variants are independent of each other (harness.screen).
    framework: ClassVar[str] = ""
    distribution: ClassVar[str]
    extra: ClassVar[str]
    modules: ClassVar[tuple[str, ...]]
    variants: ClassVar[Mapping[str, Variant]]
    gradient: ClassVar[Callable[[Any, Any], Any]]
    lowerings: ClassVar[Mapping[str, Lowering | Spellings | Absent]]
    source_imports: ClassVar[str]

    # --- what a backend implements ---------------------------------------------------

    @abstractmethod
    def namespace(self, dtype: str) -> Namespace:
        """The real objects a lowering may name (``jnp``, ``dtype``, ...)."""

    @abstractmethod
    def source_names(self, dtype: str) -> Mapping[str, str]:
        """The same names as ``namespace`` would bind, as source text."""

    @abstractmethod
    def to_numpy(self, value: Any) -> np.ndarray:
        """A framework array as a NumPy array, however odd its internal representation."""

    def source_to_numpy(self, expr: str) -> str:
        """Source converting the framework array ``expr`` to NumPy in an emitted script."""
        return f"np.asarray({expr})"

    def precision(self, dtype: str) -> contextlib.AbstractContextManager[None]:
        """A context in which ``dtype`` computations are possible (JAX's x64 switch)."""
        return contextlib.nullcontext()

    def batched(self, m: Any, hessian: Any) -> Any:
        """``hessian`` (one point's) mapped over a leading batch axis: ``jax.vmap(h)``.

        Only called for the variants declared ``batchable``; the result takes a (k, n)
        array and returns (k, n, n). Other variants are looped by ``BackendVariant.hessians``.
        A backend with a batchable variant overrides this (registration checks it).
        """
        raise NotImplementedError(f"{self.name} declares no batched Hessian")

    def batched_eager(self, m: Any, hessian: Any) -> Any:
        """``batched`` for a variant that is not ``compiled`` (it runs op by op, as a user
        who never calls the compiler does). Its batch is a screen only: a failing point is
        confirmed by the variant itself, eagerly, before it is reported
        (``hessdiff.harness.batch``), so a backend may compile the screen however is fastest
        (JAX: XLA's classic CPU runtime). By default the same as ``batched``.
        """
        return self.batched(m, hessian)

    def probes(self) -> Mapping[str, Variant]:
        """Optional capabilities for ``hessdiff.harness.relations``: other ways to reach a Hessian.

        Name -> ``Variant`` like ``variants``, but not a campaign variant: the framework's
        own HVP assembled column by column, the PINN Laplacian's per-axis second
        derivatives, a custom differentiation rule, a model's parameter Hessian, ... Each
        declares the relation that checks it (``Variant.relation``, one of
        ``PROBE_RELATIONS``), and is printable like a variant, so a finding on it renders
        a standalone reproducer. Default: none.
        """
        return {}

    def probe(self, name: str) -> Variant:
        """The probe ``name``; ``Unsupported`` naming the probes this backend has if absent."""
        probes = self.probes()
        if name not in probes:
            raise Unsupported(
                f"{self.name} has no probe {name!r}; its probes: {', '.join(probes) or 'none'}."
            )
        return probes[name]

    def environment_report(self) -> str:
        """The framework's own environment report for a bug report (``env.txt``)."""
        return f"{self.distribution}=={self.version()}"

    def source_setup(self, dtype: str) -> str:
        """Lines an emitted script runs after its imports (e.g. enabling float64)."""
        return ""

    def unsupported_reason(self, exc: BaseException) -> str | None:
        """If ``exc`` is the framework saying it does not implement something, say what;
        or the installed release lacking an API a lowering calls (``missing_api``)."""
        message = str(exc)
        if isinstance(exc, NotImplementedError) or re.search(r"not (yet )?implemented", message, re.I):
            return f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}"
        return self.missing_api(exc)

    def missing_api(self, exc: BaseException) -> str | None:
        """"jax 0.4.26 has no jax.nn.mish" when ``exc`` is an AttributeError that
        hessdiff's own code (a lowering of this backend, or code in ``backends``) met
        looking up an attribute of a public module of this framework: an op that release does not have, so the op is
        unsupported there, not a crash of the framework. Only a module's ``__getattr__``
        hook (JAX's deprecation shim, a function named ``getattr``) may come after the
        lowering's frame; the same AttributeError raised deeper in the framework's code
        stays a crash. The release named is the module's own distribution (Equinox's
        lowerings call JAX)."""
        found = _MISSING_ATTRIBUTE.match(str(exc)) if isinstance(exc, AttributeError) else None
        if found is None:
            return None
        frames = []
        tb = exc.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame.f_code)
            tb = tb.tb_next
        while frames and frames[-1].co_name in ("__getattr__", "getattr"):
            frames.pop()  # a module's attribute hook: the lookup was made by the frame before
        lowerings = {getattr(fn, "__code__", None) for fn in self.lowerings.values()}
        lowerings |= {fn.__code__ for entry in self.lowerings.values() if isinstance(entry, Spellings)
                      for fn in entry.spellings}
        # A helper of a probe (``backends/scenarios``) is hessdiff's code as much as one of
        # ``backends`` itself: equinox 0.11.0's missing eqx.filter_hessian there is no bug.
        if not frames or not (frames[-1] in lowerings
                              or _BACKENDS_DIR in Path(frames[-1].co_filename).resolve().parents):
            return None
        module, attribute = found.groups()
        root = module.split(".", 1)[0]
        public = not any(part.startswith("_") for part in module.split("."))
        if not public or root not in {name.split(".", 1)[0] for name in self.modules}:
            return None
        try:
            release = f"{root} {importlib.metadata.version(root)}"
        except importlib.metadata.PackageNotFoundError:
            release = f"{self.distribution} {self.version()}"
        return f"{release} has no {module}.{attribute}"

    # --- what the installed release has ---------------------------------------------

    def installed_lowerings(self) -> Mapping[str, Lowering | Absent]:
        """The lowering table as the installed release runs it.

        Regression triage runs old and new releases, which lack APIs the table calls: an
        op whose lowering calls one is ``Absent`` for that version, with the reason ("mlx
        0.21.1 has no mx.flip"), so ``hessdiff ops``, the coverage and the search see an op
        the release does not have instead of an AttributeError mid-Hessian; a
        ``Spellings`` entry becomes the first spelling the release can run. The APIs are
        read from the lowerings' bytecode (``hessdiff.backends.api_probe``), once per
        process (which has one installed release; a worker reads its own). A framework
        that is not installed keeps the declared table (each ``Spellings`` as its newest
        spelling): nothing can be checked against it.
        """
        cache = self.__dict__.setdefault(_PROBE_CACHES[0], {})
        # One installed release per process: no version lookup per call. The entries' ids
        # are in the key, so a table changed in place (a test's monkeypatch) is read again.
        key = (id(self.lowerings), tuple(map(id, self.lowerings.values())))
        if key not in cache:
            roots = api_roots(self)
            table: dict[str, Lowering | Absent] = {}
            for op_name, entry in self.lowerings.items():
                if isinstance(entry, Absent):
                    table[op_name] = entry
                    continue
                spellings = entry.spellings if isinstance(entry, Spellings) else (entry,)
                gaps = [lacking(self, lowering_chains(s), roots) for s in spellings]
                chosen = next((s for s, gap in zip(spellings, gaps) if gap is None), None)
                table[op_name] = chosen if chosen is not None else Absent(str(gaps[0]))
            cache[key] = table
        return cache[key]

    def __getstate__(self) -> dict[str, Any]:
        """A backend pickled for a worker process (``hessdiff.harness.worker``) leaves its
        probe caches behind: they hold lowerings (lambdas), and the worker, with the same
        framework installed, reads its own."""
        return {k: v for k, v in self.__dict__.items() if k not in _PROBE_CACHES}

    def variant_gap(self, name: str, spec: Variant) -> str | None:
        """"mlx 0.21.1 has no mlx.core.vmap" if the variant (or probe) ``name`` calls an API
        the installed release lacks, in its composition or its helpers; else None."""
        cache = self.__dict__.setdefault(_PROBE_CACHES[1], {})
        key = (name, id(spec))
        if key not in cache:
            roots = api_roots(self)
            gap = lacking(self, lowering_chains(spec.compose), roots)
            if gap is None and roots is not None:
                frameworks = {module.split(".", 1)[0] for module in self.modules}
                frameworks |= {getattr(obj, "__name__", "").split(".", 1)[0] for obj, _ in roots.values()}
                for helper in spec.helpers:
                    gap = gap or lacking(self, helper_chains(helper, frameworks), roots, imported=True)
            cache[key] = gap
        return cache[key]

    # --- shared machinery ------------------------------------------------------------

    def availability(self) -> Availability:
        """Whether every module imports; never raises.

        A warning at import (a DeprecationWarning from an older or newer release) is
        not absence: the module is imported with warnings recorded, not raised, even
        where a test runner turns warnings into errors, and ``reason`` names them.
        """
        heard: list[str] = []
        for module in self.modules:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
                return Availability(
                    False,
                    "",
                    f"{self.name}: {module} is not importable ({type(exc).__name__}: {_first_line(exc)}); "
                    f"install it with: pip install 'hessdiff[{self.extra}]'",
                )
            heard += sorted({f"{w.category.__name__} importing {module}" for w in caught})
        return Availability(True, self.version(), "; ".join(heard))

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def require(self) -> None:
        """Raise ``BackendUnavailable`` with the install hint if the framework is missing."""
        status = self.availability()
        if not status.available:
            raise BackendUnavailable(status.reason)

    def lower(self, program: Program, dtype: str, every_node: bool = False) -> Callable[[Any], Any]:
        """The program as a function of a framework array, built from the lowering table;
        ``every_node``: the function returns every node's value (a tuple), not the last."""
        self._check_lowerable(program)
        table = self.installed_lowerings()
        ns = self.namespace(dtype)
        consts = {
            i: python_number(node) if literal_of(node)
            else self._const(ns, program.constant(i), node, program.constant(i))
            for i, node in enumerate(program.nodes)
            if node.kind == "const"
        }
        nodes = program.nodes

        def f(x: Any) -> Any:
            values: list[Any] = [x]
            for i, node in enumerate(nodes[1:], start=1):
                if node.kind == "const":
                    values.append(consts[i])
                else:
                    args = [values[a] for a in node.args]
                    values.append(table[node.kind](ns, *args, **_call_attrs(program, node)))
            return tuple(values) if every_node else values[-1]

        return f

    def asarray(self, x: np.ndarray, dtype: str) -> Any:
        """``x`` as a framework array of ``dtype``, through the table's ``const`` lowering."""
        return self.installed_lowerings()["const"](self.namespace(dtype), np.asarray(x, dtype=np.float64))

    def function_source(self, program: Program, dtype: str) -> tuple[list[str], list[str]]:
        """(constant definitions, body lines of ``def f(x)``) for the program."""
        self._check_lowerable(program)
        ns = SourceNamespace(self.source_names(dtype))
        names: list[Src] = []
        consts: list[str] = []
        body: list[str] = []
        for i, node in enumerate(program.nodes):
            if node.kind == "input":
                names.append(Src("x"))
            elif literal_of(node):  # a Python number, written into the expression itself
                names.append(Src(render(python_number(node))))
            elif node.kind == "const":
                expr = self._const(ns, Src(array_literal(program.constant(i))), node, program.constant(i))
                consts.append(f"c{i} = {unparenthesized(expr.text)}")
                names.append(Src(f"c{i}"))
            else:
                args = [names[a] for a in node.args]
                expr = self.installed_lowerings()[node.kind](ns, *args, **_call_attrs(program, node))
                body.append(f"v{i} = {unparenthesized(expression_text(expr))}")
                names.append(Src(f"v{i}"))
        body.append(f"return {names[-1].text}")
        return consts, body

    def _const(self, ns: Any, value: Any, node: Any, entries: np.ndarray) -> Any:
        """A constant through the table's ``const`` lowering; an integer array one
        (``hessdiff.harness.ir.integer_dtype``) with ``integer="int32"`` or ``"int64"``; a
        bool array (``hessdiff.harness.ir.boolean_array``) through the ``mask`` lowering,
        given ``entries`` as the Python bools a user writes (``[True, False]``), in the
        code that runs and in the repro alike."""
        if boolean_array(node):
            return self.installed_lowerings()["mask"](ns, flags(entries))
        const = self.installed_lowerings()["const"]
        integer = integer_dtype(node)
        return const(ns, value, integer=integer) if integer else const(ns, value)

    def _check_lowerable(self, program: Program) -> None:
        table = self.installed_lowerings()
        if any(integer_array(node) for node in program.nodes) and not _takes_integer(table["const"]):
            raise Unsupported(f"{self.name}'s const lowering takes no integer=...: no integer arrays")
        if any(boolean_array(node) for node in program.nodes) and "mask" not in table:
            raise Unsupported(f"{self.name} has no mask lowering: no bool arrays")
        for kind in sorted(program.op_names):
            lowering = table.get(kind)
            if lowering is None:
                raise Unsupported(f"{self.name} has no lowering for op {kind!r}")
            if isinstance(lowering, Absent):
                raise Unsupported(f"{self.name} has no {kind}: {lowering.reason}")


def _call_attrs(program: Program, node: Any) -> dict[str, Any]:
    """The keywords a node's lowering is called with: its attrs, and ``mask=True`` where
    an argument is a framework bool array (where's condition), which the lowering uses
    as it is (``where(mask, a, b)``) rather than as a float compared with 0."""
    attrs = node.attr_dict
    if any(boolean_array(program.nodes[a]) for a in node.args):
        attrs["mask"] = True
    return attrs


def _takes_integer(lowering: Any) -> bool:
    try:
        return "integer" in inspect.signature(lowering).parameters
    except (TypeError, ValueError):
        return False



def _first_line(exc: BaseException) -> str:
    """An exception's message, first line only (an import error's can run to pages)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
