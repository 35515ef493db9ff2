"""The SQL tool's first gate: one statement, starting with a read keyword, whatever hides it."""

from __future__ import annotations

import pytest

from aichat_backend.tools.sql_guard import RefusedQuery, check_read_only, mask


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select * from items;  ",
        "(SELECT 1) UNION (SELECT 2)",
        "WITH t AS (SELECT 1) SELECT * FROM t",
        "VALUES (1), (2)",
        "TABLE items",
        "EXPLAIN SELECT 1",
        "SHOW server_version",
        "SELECT ';' AS semicolon",
        'SELECT 1 AS "a;b"',
        "SELECT $$ ; DROP TABLE x $$",
        "SELECT $tag$ ; $$ ; $tag$",
        "-- a comment; with a semicolon\nSELECT 1",
        "/* nested /* ; */ still a comment ; */ SELECT 1",
        "SELECT E'it\\'s; fine'",
        "SELECT E'\\'; still inside the string; '",
        "SELECT 'it''s; fine'",
        "SELECT $1::int",
    ],
)
def test_read_statements_pass(sql: str) -> None:
    statement = check_read_only(sql)
    assert not statement.rstrip().endswith(";")


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("INSERT INTO items VALUES (1)", "INSERT is refused"),
        ("DROP TABLE items", "DROP is refused"),
        ("SELECT 1; DROP TABLE items", "one statement"),
        ("SELECT 1 ; ; DELETE FROM items", "one statement"),
        ("COPY (SELECT 1) TO PROGRAM 'id'", "COPY is refused"),
        ("SET TRANSACTION READ WRITE", "SET is refused"),
        ("BEGIN; INSERT INTO items VALUES (1); COMMIT", "one statement"),
        ("COMMIT", "COMMIT is refused"),
        ("SELECT $$ ; $$; DELETE FROM items", "one statement"),
        # An escaped backslash ends the string: the ';' after it is real.
        ("SELECT E'\\\\'; DELETE FROM items", "one statement"),
        ("SELECT 'unterminated", "not closed"),
        ("SELECT 1 /* never closed", "not closed"),
        ("/* comment only */", "empty"),
        ("", "empty"),
        ("x" * 20_001, "longer than"),
    ],
)
def test_writes_and_several_statements_are_refused(sql: str, why: str) -> None:
    with pytest.raises(RefusedQuery) as refused:
        check_read_only(sql)
    assert why in str(refused.value)


def test_mask_keeps_positions() -> None:
    sql = "SELECT 'a;b', \"c;d\" -- e;f\n; x"
    masked = mask(sql)
    assert len(masked) == len(sql)
    assert masked.count(";") == 1 and masked.index(";") == sql.rindex(";")
