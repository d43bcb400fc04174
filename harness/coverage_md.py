"""The coverage section of ``summary.md``: checks per op and variant, and what was never reached.

Coverage is op -> variant -> counts (``hessdiff.harness.campaign_stats.CampaignStats.coverage``).
``declared_absent`` (a pair the framework declares absent, not a gap in the search) is also read by
the HTML report's coverage page.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["coverage_section", "declared_absent", "special_coverage"]


def coverage_section(coverage: Mapping[str, Mapping[str, Mapping[str, int]]]) -> list[str]:
    from hessdiff.harness.ops import CATALOGUE

    ops = list(CATALOGUE) + sorted(set(coverage) - set(CATALOGUE))
    variants = sorted({v for per_op in coverage.values() for v in per_op})
    lines = [
        "## Coverage",
        "",
        "Each cell: checks / checks at a special point (kink, tie, domain edge) / findings; "
        "`—` is never reached; `absent`: the framework has no such op (`hessdiff ops` says why).",
        "",
    ]
    if variants:
        lines += [
            "| op | " + " | ".join(f"`{v}`" for v in variants) + " |",
            "| --- | " + " | ".join("---:" for _ in variants) + " |",
        ]
        for op_name in ops:
            per_op = coverage.get(op_name, {})
            cells = []
            for v in variants:
                c = per_op.get(v, {})
                n = int(c.get("checks", 0))
                special, found = int(c.get("special", 0)), int(c.get("findings", 0))
                cells.append(f"{n}/{special}/{found}" if n else ("absent" if declared_absent(v, op_name) else "—"))
            lines.append(f"| {op_name} | " + " | ".join(cells) + " |")
        lines.append("")
    never = [
        op_name for op_name in ops
        if not any(int(c.get("checks", 0)) for c in coverage.get(op_name, {}).values())
    ]
    # An op every variant's release lacks is not a gap of the search: listed apart, so
    # "none" means every op these releases have was checked.
    absent = [op_name for op_name in never
              if variants and all(declared_absent(v, op_name) for v in variants)]
    unreached = [op_name for op_name in never if op_name not in absent]
    line = f"**Ops never reached**: {', '.join(unreached) if unreached else 'none'}"
    if absent:
        line += f" (absent in every variant's release, so never tried: {', '.join(absent)})"
    lines.append(line)
    pairs = [
        f"{op_name} on `{v}`" for op_name in ops for v in variants
        if not int(coverage.get(op_name, {}).get(v, {}).get("checks", 0)) and not declared_absent(v, op_name)
    ]
    lowered = sum(1 for op_name in ops for v in variants if not declared_absent(v, op_name))
    lines += ["", f"**Lowered (op, variant) pairs reached**: {lowered - len(pairs)} of {lowered}; never: "
              f"{', '.join(pairs) if pairs else 'none'}"]
    lines += ["", *special_coverage(coverage)]
    return lines + [""]


def declared_absent(variant: str, op_name: str) -> bool:
    """Whether ``variant``'s backend declares ``op_name`` absent (False when unknown: a
    report may name a backend this installation lacks)."""
    from hessdiff.backends import Absent, get_variant

    try:
        lowering = get_variant(variant).backend.installed_lowerings().get(op_name)
    except (KeyError, ValueError, AttributeError):
        return False
    return isinstance(lowering, Absent)


def special_coverage(coverage: Mapping[str, Mapping[str, Mapping[str, int]]]) -> list[str]:
    """How many catalogued special values some check reached (within rounding distance)
    and hit exactly (a traced argument exactly at it, as the framework computes it; of
    the ones an argument can sit on, ``attainable``), the ones none did, and the
    traced/constant argument patterns of elementwise ops no check differentiated."""
    from hessdiff.harness.exact import argument_kinds, argument_patterns, attainable
    from hessdiff.harness.ops import CATALOGUE

    total, missed, inexact, edges = 0, [], [], []
    patterns, unpatterned = 0, []
    kinds, unkinded = 0, []
    for op_name, spec in CATALOGUE.items():
        cells = coverage.get(op_name, {}).values()
        for index, label in enumerate(spec.special_names):
            total += 1
            if not any(int(c.get(f"special:{index}", 0)) for c in cells):
                missed.append(f"{op_name} at {label}")
            if not attainable(op_name, index):
                edges.append(f"{op_name} at {label}")
            elif not any(int(c.get(f"exact:{index}", 0)) for c in cells):
                inexact.append(f"{op_name} at {label}")
        for pattern in argument_patterns(op_name):
            patterns += 1
            if not any(int(c.get(f"pattern:{pattern}", 0)) for c in cells):
                unpatterned.append(f"{op_name}({pattern})")
        for kind in argument_kinds(op_name):
            kinds += 1
            if not any(int(c.get(f"kind:{kind}", 0)) for c in cells):
                position, name = kind.split(":")
                unkinded.append(f"{op_name}(arg {position} as {name})")
    reached, attainables = total - len(missed), total - len(edges)
    exact = attainables - len(inexact)

    def share(k: int, of: int) -> str:
        return f" ({100.0 * k / of:.0f}%)" if of else ""

    return [
        f"**Special values reached**: {reached} of {total}{share(reached, total)}; "
        f"**hit exactly**: {exact} of the {attainables} an argument can sit on{share(exact, attainables)}",
        "",
        f"**Special values never reached**: {', '.join(missed) if missed else 'none'}",
        "",
        f"**Special values never hit exactly**: {', '.join(inexact) if inexact else 'none'}",
        "",
        f"**Domain edges, reached from inside only** (the op or its derivatives are undefined exactly "
        f"there, or its value is beyond the dtype's range): {', '.join(edges) if edges else 'none'}",
        "",
        f"**Argument patterns differentiated** (T traced, C constant): {patterns - len(unpatterned)} of "
        f"{patterns}; never: {', '.join(unpatterned) if unpatterned else 'none'}",
        "",
        f"**Argument kinds differentiated** (a constant argument as a framework array, a Python float "
        f"or int, an int32 or int64 array, a bool mask): {kinds - len(unkinded)} of {kinds}; "
        f"never: {', '.join(unkinded) if unkinded else 'none'}",
    ]
