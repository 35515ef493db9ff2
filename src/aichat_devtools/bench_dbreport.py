"""Database accounting of a run: statements and transactions per turn, and what ran
before the first token (from ``bench_dbprobe``'s records), and PostgreSQL's own counters."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from aichat_devtools.bench_clients import StreamResult
from aichat_devtools.bench_report import pct, rnd


def analyse_db(turns: dict[str, StreamResult], probe: Path, arrivals: Path) -> dict[str, Any]:
    """Per turn: statements, transactions, their time, and what ran before the first token."""
    stmts: dict[str, list[tuple[float, float, str, str]]] = {}
    sql: dict[str, list[str]] = {}
    txs: dict[str, list[tuple[float, float]]] = {}
    for line in probe.read_text().splitlines():
        rec = json.loads(line)
        if rec[0] == "stmt" and rec[5] in turns:
            stmts.setdefault(rec[5], []).append((rec[1], rec[2], rec[3], rec[4]))
            sql.setdefault(rec[5], []).append(rec[6] if len(rec) > 6 else "")
        elif rec[0] == "tx" and rec[3] in turns:
            txs.setdefault(rec[3], []).append((rec[1], rec[2]))
    arrived: dict[str, float] = {}
    for line in arrivals.read_text().splitlines():
        tag, _, t = line.partition(" ")
        if tag in turns:
            arrived[tag] = float(t)
    per: list[dict[str, float]] = []
    verbs: dict[str, int] = {}
    outside = 0
    overlapped = 0
    finish_early = 0
    for tag, res in turns.items():
        ss = stmts.get(tag, [])
        ts = txs.get(tag, [])
        if not ss or res.ttft is None:
            continue
        first = res.t_send + res.ttft
        for _s, _d, verb, table_name in ss:
            key = f"{verb} {table_name}".strip()
            verbs[key] = verbs.get(key, 0) + 1
        begin = next(
            (
                (a, b)
                for a, b in ts
                if any(a <= s <= b and v == "INSERT" and t == "messages" for s, _, v, t in ss)
            ),
            None,
        )
        writes_early = [s for s, _, v, _ in ss if v in ("INSERT", "UPDATE", "DELETE") and s < first]
        # The answer's one write (after the upstream's last token) may start before the
        # client has read the first text when the whole answer came in one message. On
        # PostgreSQL it is one statement whose main part is the usage upsert, with the
        # answer's UPDATE in a CTE: found by its text.
        answer_writes = [
            s
            for (s, _, v, t), text in zip(ss, sql.get(tag, []), strict=False)
            if (v == "UPDATE" and t == "messages") or "UPDATE messages" in text
        ]
        finish = next(
            ((a, b) for a, b in ts if (a, b) != begin and any(a <= s <= b for s in answer_writes)),
            None,
        )
        if finish is not None and finish[0] < first:
            finish_early += 1
        windows = [w for w in (begin, finish) if w is not None]
        outside += sum(1 for s in writes_early if not any(a <= s <= b for a, b in windows))
        arrival = arrived.get(tag)
        if begin is not None and arrival is not None and arrival < begin[1]:
            overlapped += 1
        per.append(
            {
                "statements": len(ss),
                "transactions": len(ts),
                "statement_ms": sum(d for _, d, _, _ in ss) * 1000,
                "transaction_ms": sum(b - a for a, b in ts) * 1000,
                "begin_ms": (begin[1] - begin[0]) * 1000 if begin else math.nan,
                "begin_end_ms": (begin[1] - res.t_send) * 1000 if begin else math.nan,
                "upstream_arrival_ms": (arrival - res.t_send) * 1000 if arrival else math.nan,
                "first_token_ms": res.ttft * 1000,
                "first_token_after_begin_ms": (first - begin[1]) * 1000 if begin else math.nan,
            }
        )
    if not per:
        return {"turns": 0, "note": "no statements recorded"}
    example: list[str] = []
    tag = next(iter(t for t in turns if t in stmts and turns[t].ttft is not None), "")
    if tag:
        res = turns[tag]
        ts_sorted = sorted(txs.get(tag, []))
        for (start, dur, _v, _t), text in zip(stmts[tag], sql[tag], strict=False):
            tx_no = next((i for i, (a, b) in enumerate(ts_sorted) if a <= start <= b), -1)
            example.append(
                f"tx{tx_no} +{(start - res.t_send) * 1000:6.2f} ms {dur * 1000:5.2f} ms  {text}"
            )
        example.append(
            "upstream saw the request "
            f"+{(arrived.get(tag, res.t_send) - res.t_send) * 1000:.2f} ms;"
            f" first token at the client +{(res.ttft or 0) * 1000:.2f} ms"
        )

    def med(key: str) -> float | None:
        values = [x[key] for x in per if not math.isnan(x[key])]
        return rnd(pct(values, 50), 3)

    n = len(per)
    return {
        "turns": n,
        "statements_per_turn": med("statements"),
        "transactions_per_turn": med("transactions"),
        "statement_ms_per_turn": med("statement_ms"),
        "transaction_ms_per_turn": med("transaction_ms"),
        "statements_by_kind_per_turn": {k: round(v / n, 2) for k, v in sorted(verbs.items())},
        "writes_before_first_token_outside_begin_per_turn": round(outside / n, 3),
        "begin_overlapped_with_upstream_fraction": round(overlapped / n, 3),
        "answer_write_before_client_first_token_fraction": round(finish_early / n, 3),
        "timeline_ms_median": {
            "upstream_request_arrived": med("upstream_arrival_ms"),
            "begin_transaction": med("begin_ms"),
            "begin_committed": med("begin_end_ms"),
            "first_token_at_client": med("first_token_ms"),
            "first_token_after_begin_commit": med("first_token_after_begin_ms"),
        },
        "example_turn": example,
        "how": "bench_dbprobe: SQLAlchemy cursor events + Database.transaction wall time, "
        "one turn in flight, instant upstream (16 tokens); times from the client's send",
    }


def pg_per_turn(before: dict[str, float], after: dict[str, float], turns: int) -> dict[str, Any]:
    if turns <= 0:
        return {"turns": 0}
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {
        "turns": turns,
        "xact_commit_per_turn": rnd(delta["xact_commit"] / turns, 2),
        "xact_rollback_per_turn": rnd(delta["xact_rollback"] / turns, 3),
        "tup_inserted_per_turn": rnd(delta["tup_inserted"] / turns, 2),
        "tup_updated_per_turn": rnd(delta["tup_updated"] / turns, 2),
        "tup_fetched_per_turn": rnd(delta["tup_fetched"] / turns, 2),
        "tup_returned_per_turn": rnd(delta["tup_returned"] / turns, 2),
        "active_time_ms_per_turn": rnd(delta["active_time"] / turns, 3),
        "how": "pg_stat_database deltas of B-postgres's own database over every B-postgres turn "
        "after the DB probe (streamed and unary; connections reset first so no earlier "
        "pending statistics land inside); active_time is server time executing statements",
    }
