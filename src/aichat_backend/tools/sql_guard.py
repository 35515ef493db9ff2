"""The first gate of the read-only SQL tool: one statement, and one that only reads.

This check gives the model a clear answer for an obvious write; it is not the boundary.
What a statement may do is decided by PostgreSQL: the read-only transaction, the role's
grants, and the single-statement rule of the extended query protocol (see
``readonly_db``). The scan here understands what hides a ``;`` or a keyword: comments
(nested ``/* */``), quoted strings (``''``, ``E'\\''``), quoted identifiers and
dollar-quoted bodies (``$tag$ … $tag$``).
"""

from __future__ import annotations

import re

MAX_SQL_CHARS = 20_000
# What may start a statement: each only reads, or is refused by a read-only transaction.
READ_KEYWORDS = frozenset({"select", "with", "values", "table", "explain", "show"})

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_FIRST_WORD = re.compile(r"[\s(]*([A-Za-z_]+)")
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$]")


class RefusedQuery(ValueError):
    """A statement the tool will not send: the message says why, for the model to read."""


def check_read_only(sql: str) -> str:
    """The statement to run (a trailing ``;`` removed), or ``RefusedQuery``."""
    if len(sql) > MAX_SQL_CHARS:
        raise RefusedQuery(f"the query is longer than {MAX_SQL_CHARS} characters")
    masked = mask(sql)
    code = masked.rstrip()
    while code.endswith(";"):
        code = code[:-1].rstrip()
    if not code.strip():
        raise RefusedQuery("the query is empty")
    if ";" in code:
        raise RefusedQuery("only one statement per query: remove the ';' between statements")
    word = _first_word(code)
    if word not in READ_KEYWORDS:
        allowed = ", ".join(sorted(k.upper() for k in READ_KEYWORDS))
        raise RefusedQuery(
            f"only read-only queries are allowed (statements starting with {allowed}); "
            f"{word.upper() or 'this statement'} is refused"
        )
    return sql[: len(code)]


def first_word(sql: str) -> str:
    """The statement's first keyword, lower case (comments skipped); "" if none."""
    return _first_word(mask(sql))


def _first_word(masked: str) -> str:
    match = _FIRST_WORD.match(masked)
    return match.group(1).lower() if match else ""


def mask(sql: str) -> str:
    """``sql`` with comments and quoted text blanked out (same length), or ``RefusedQuery``."""
    out = list(sql)
    i, n = 0, len(sql)

    def blank(start: int, end: int) -> None:
        for k in range(start, end):
            if out[k] not in "\n":
                out[k] = " "

    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise RefusedQuery("a /* comment is not closed")
            blank(i, j)
            i = j
        elif ch == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _word_char(sql[i - 2]))
            j = _end_of_quoted(sql, i, "'", backslash=escapes)
            blank(i + 1, j - 1)
            i = j
        elif ch == '"':
            j = _end_of_quoted(sql, i, '"', backslash=False)
            blank(i + 1, j - 1)
            i = j
        elif ch == "$" and (i == 0 or not _word_char(sql[i - 1])):
            tag = _DOLLAR_TAG.match(sql, i)
            if tag is None:  # a parameter such as $1
                i += 1
                continue
            close = sql.find(tag.group(0), tag.end())
            if close < 0:
                raise RefusedQuery(f"a {tag.group(0)} quoted string is not closed")
            blank(tag.end(), close)
            i = close + len(tag.group(0))
        else:
            i += 1
    return "".join(out)


def _word_char(ch: str) -> bool:
    return bool(_IDENTIFIER_CHAR.match(ch))


def _end_of_quoted(sql: str, start: int, quote: str, *, backslash: bool) -> int:
    """Index just past the closing quote (a doubled quote is part of the text)."""
    j = start + 1
    while j < len(sql):
        if backslash and sql[j] == "\\":
            j += 2
            continue
        if sql[j] == quote:
            if sql.startswith(quote * 2, j):
                j += 2
                continue
            return j + 1
        j += 1
    raise RefusedQuery(f"a {quote} quoted text is not closed")
