"""``junit.xml``: the report for CI, one test suite per variant.

A new failing finding is a failure, a baselined one a skip (with its upstream link), and
a convention or noise a passing case that says why it is not a failure; each variant
also has one passing case for the cases it checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from xml.etree import ElementTree as ET

from hessdiff.harness.report_rows import Row
from hessdiff.harness.summary_md import first_sentence

__all__ = ["render_junit"]


def render_junit(rows: list[Row], checks: Mapping[str, int]) -> str:
    variants = sorted(set(checks) | {r.finding.variant for r in rows})
    root = ET.Element("testsuites", name="hessdiff")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for variant in variants:
        suite = ET.SubElement(root, "testsuite", name=variant)
        classname = "hessdiff." + variant.replace(":", ".")
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        if variant in checks:
            ET.SubElement(suite, "testcase", classname=classname,
                          name=f"checked {checks[variant]} cases", time="0")
            counts["tests"] += 1
        for row in (r for r in rows if r.finding.variant == variant):
            f = row.finding
            ops = "+".join(sorted(f.program.op_names))
            name = f"{Path(row.folder).name}: {f.kind.value} {f.dtype} {ops}"
            case = ET.SubElement(suite, "testcase", classname=classname, name=_xml(name), time="0")
            counts["tests"] += 1
            if row.status == "new":
                message = first_sentence(f.explanation or f.error) or f.kind.value
                failure = ET.SubElement(case, "failure", type=f.kind.value, message=_xml(message))
                failure.text = _xml(_failure_text(row))
                counts["failures"] += 1
            elif row.status == "known" and f.kind.is_failure:
                upstream = (row.entry.upstream if row.entry else "") or "no upstream link"
                ET.SubElement(case, "skipped", message=_xml(f"baselined: {upstream}"))
                counts["skipped"] += 1
            else:
                out = ET.SubElement(case, "system-out")
                out.text = _xml(f"{f.kind.value} ({f.severity}), not a failure: "
                                f"{f.explanation or 'no explanation recorded'}")
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", "0")
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", "0")
        for k in totals:
            totals[k] += counts[k]
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _failure_text(row: Row) -> str:
    f = row.finding
    parts = [f"signature: {f.signature}", f"reproducer: {row.folder}/repro.py", ""]
    if f.explanation:
        parts.append(f.explanation)
    if f.error:
        parts += ["", f.error]
    parts += ["", "program:", f.program.pretty()]
    return "\n".join(parts)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """Drop colour codes and the characters XML 1.0 cannot hold (from a traceback, say)."""
    return _XML_INVALID.sub("", _ANSI.sub("", text))
