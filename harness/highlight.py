"""Python source as HTML, one ``<span>`` per token, for the program listing and repro.py.

The pages carry no highlighting library (they are self-contained and fetch nothing): the
standard library's tokenizer classifies the tokens, and the report's stylesheet colours
the classes.
"""

from __future__ import annotations

import io
import keyword
import tokenize
from typing import Any

__all__ = ["highlight"]

_BUILTINS = frozenset({"print", "len", "range", "float", "int", "abs", "min", "max", "sum", "list", "tuple",
                       "dict", "str", "repr", "isinstance", "SystemExit", "Exception", "__name__", "True",
                       "False", "None"})


def highlight(source: str) -> Any:
    """Python source as HTML with ``<span class="...">`` per token: keyword (k), string
    (s), comment (c), number (n), builtin (b), definition name (d), operator (o). Text
    that does not tokenize is shown plain."""
    from markupsafe import Markup, escape

    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out: list[str] = []
    pos = 0
    previous = ""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return Markup(escape(source))
    for tok in tokens:
        if tok.type in (tokenize.ENDMARKER, tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            continue
        (srow, scol), (erow, ecol) = tok.start, tok.end
        if srow - 1 >= len(lines) or erow - 1 >= len(lines):
            continue
        begin, end = starts[srow - 1] + scol, starts[erow - 1] + ecol
        if begin < pos:
            continue
        cls = _token_class(tok, previous)
        out.append(str(escape(source[pos:begin])))
        text = str(escape(source[begin:end]))
        out.append(f'<span class="{cls}">{text}</span>' if cls else text)
        pos = end
        if tok.type not in (tokenize.COMMENT,):
            previous = tok.string
    out.append(str(escape(source[pos:])))
    return Markup("".join(out))


def _token_class(tok: tokenize.TokenInfo, previous: str) -> str:
    name = tokenize.tok_name.get(tok.type, "")
    if tok.type == tokenize.STRING or name.startswith("FSTRING"):
        return "s"
    if tok.type == tokenize.COMMENT:
        return "c"
    if tok.type == tokenize.NUMBER:
        return "n"
    if tok.type == tokenize.NAME:
        if previous in ("def", "class"):
            return "d"
        if keyword.iskeyword(tok.string):
            return "k"
        if tok.string in _BUILTINS:
            return "b"
        return ""
    if tok.type == tokenize.OP and tok.string in ("=", "==", "+", "-", "*", "/", "**", "@", "<", ">", "<=", ">=",
                                                  "!=", "->"):
        return "o"
    return ""
