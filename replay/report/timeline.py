"""The report's connection timeline and gap table, read with SQL over the capture views.

* `runs`: each run's capture window (first to last record) and whether it stopped
  cleanly.
* `connections`: one row per row of the `connections` view that touches the window,
  with what the timeline draws: its feed (null is feed 0), open and close times, close
  code and reason, who closed it (`initiator` as recorded, else inferred from the
  client's classification), the reconnect delay its feed waited before it, how long it
  overlapped the one before on its feed (make-before-break), and whether it ended in a
  planned rotation.
* `gaps`: the `gaps` view in the window, with the market of the frame that showed the
  gap and how it recovered, at most `MAX_GAPS` rows (the total is returned too).

Times come out as epoch ms. It reads the views of `replay.sql` and builds no other SQL.
"""

from __future__ import annotations

from typing import Any, Final

import duckdb

from replay.report.window import Window
from replay.sql.build import event_field, sql_literal
from schemas.channels import SEQUENCED_CHANNELS
from schemas.events import Closed, ReconnectWait, RunStart, RunStop, Switched

__all__ = ["MAX_GAPS", "PLANNED_REASONS", "connections", "gaps", "runs"]

#: Gap rows listed (the total is always counted).
MAX_GAPS: Final = 2000
#: The client's proactive disconnect reasons (recorder.link.policies.DisconnectReason):
#: a connection that ended for one of these was closed on purpose, a planned rotation.
PLANNED_REASONS: Final = ("user_requested", "scheduled", "callback_triggered", "connection_limit")
#: Who closed a connection when the capture did not record it, by disconnect reason.
_INFERRED_INITIATOR: Final = {"server_closed": "server", "network_error": "network"}


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    table = con.sql(sql).to_arrow_table()
    return table.to_pylist()


def runs(con: duckdb.DuckDBPyConnection, window: Window) -> list[dict[str, Any]]:
    """Each run in the window: its capture window, frames, connections, clean stop."""
    return _rows(
        con,
        f"""SELECT f.run_id, (f.first_ns // 1000) / 1e3 AS start_ms,
            (f.last_ns // 1000) / 1e3 AS end_ms, f.frames, f.connections,
            s.run_id IS NOT NULL AS clean_stop, r.version
        FROM (SELECT run_id, min(recv_ns) AS first_ns, max(recv_ns) AS last_ns,
                count(*) AS frames, count(DISTINCT conn) FILTER (WHERE conn > 0) AS connections
              FROM frames WHERE {window.where()} GROUP BY run_id) f
        LEFT JOIN (SELECT DISTINCT run_id FROM events WHERE type = '{RunStop.name}') s
            USING (run_id)
        LEFT JOIN (SELECT run_id, any_value({event_field(RunStart, "version", detail="detail")})
                   AS version FROM events WHERE type = '{RunStart.name}' GROUP BY run_id) r
            USING (run_id)
        ORDER BY f.run_id""",
    )


def connections(con: duckdb.DuckDBPyConnection, window: Window) -> list[dict[str, Any]]:
    """Every connection touching the window, in run and connection order."""
    delay = event_field(ReconnectWait, "delay_s", "DOUBLE", detail="detail")
    initiator = event_field(Closed, "initiator", detail="detail")
    new_conn = event_field(Switched, "new_conn", "INTEGER", detail="detail")
    old_conn = event_field(Switched, "old_conn", "INTEGER", detail="detail")
    switch_reason = event_field(Switched, "reason", detail="detail")
    planned = ", ".join(sql_literal(r) for r in PLANNED_REASONS)
    rows = _rows(
        con,
        f"""WITH c AS (
            SELECT * REPLACE (COALESCE(feed, 0)::INTEGER AS feed),
                epoch_us(COALESCE(open_time, attempt_time, first_frame_time)) AS open_us,
                epoch_us(COALESCE(close_time, last_frame_time, open_time, attempt_time))
                    AS close_us
            FROM connections
        ), waits AS (  -- each reconnect wait goes to the next connection its feed opened
            SELECT w.run_id, c.conn, sum(w.delay_s) AS delay_s, count(*) AS waits
            FROM (SELECT run_id, COALESCE(feed, 0) AS feed, epoch_us(recv_time) AS us,
                    {delay} AS delay_s FROM events WHERE type = '{ReconnectWait.name}') w
            ASOF JOIN (SELECT run_id, feed, conn, open_us FROM c) c
                ON w.run_id = c.run_id AND w.feed = c.feed AND c.open_us >= w.us
            GROUP BY ALL
        ), closes AS (
            SELECT run_id, conn, arg_max({initiator}, idx) AS initiator FROM events
            WHERE type = '{Closed.name}' GROUP BY ALL
        ), switches AS (
            SELECT run_id, {old_conn} AS conn, any_value({new_conn}) AS switched_to,
                any_value({switch_reason}) AS switch_reason
            FROM events WHERE type = 'switch' GROUP BY ALL
        )
        SELECT c.run_id, c.conn, c.feed, c.opened, c.standby, c.open_us / 1e3 AS open_ms,
            c.close_us / 1e3 AS close_ms, c.close_time IS NOT NULL AS closed,
            c.close_code, c.close_reason, c.disconnect_reason, k.initiator,
            c.frames_in, c.frames_out, c.errors, c.duration_s,
            w.delay_s AS reconnect_delay_s, COALESCE(w.waits, 0) AS reconnect_waits,
            greatest(0, least(c.close_us, COALESCE(max(c.close_us) OVER prev, c.open_us))
                - c.open_us) / 1e6
                AS overlap_s,
            s.switched_to, s.switch_reason,
            s.switched_to IS NOT NULL OR c.disconnect_reason IN ({planned}) AS planned
        FROM c LEFT JOIN waits w USING (run_id, conn) LEFT JOIN closes k USING (run_id, conn)
        LEFT JOIN switches s USING (run_id, conn)
        WHERE c.open_us * 1000 < {window.end_ns} AND c.close_us * 1000 >= {window.start_ns}
        WINDOW prev AS (PARTITION BY c.run_id, c.feed ORDER BY c.open_us, c.conn
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        ORDER BY c.run_id, c.conn""",
    )
    for row in rows:
        if row["initiator"] is None and row["closed"]:
            reason = row["disconnect_reason"] or ""
            row["initiator"] = _INFERRED_INITIATOR.get(reason, "client" if reason else None)
            row["initiator_inferred"] = row["initiator"] is not None
        row["overlap_s"] = row["overlap_s"] or 0.0
    return rows


def gaps(con: duckdb.DuckDBPyConnection, window: Window) -> tuple[list[dict[str, Any]], int]:
    """(the first MAX_GAPS seq discontinuities in the window, in time order; how many)."""
    sequenced = ", ".join(sql_literal(c) for c in sorted(SEQUENCED_CHANNELS))
    in_window = window.where("epoch_us(gap_time) * 1000")
    rows = _rows(  # the view's one pass; the total rides on every row
        con,
        f"""SELECT g.run_id, g.conn, g.sid, g.channel, g.kind, f.market_ticker AS market,
            g.prev_seq, g.seq, g.missing, g.idx, epoch_us(g.gap_time) / 1e3 AS gap_ms,
            g.resync_command, epoch_us(g.resync_snapshot_time) / 1e3 AS resync_ms,
            g.recovered, g.recovery_s, g.total
        FROM (SELECT *, count(*) OVER () AS total FROM gaps WHERE {in_window}
              ORDER BY gap_time, run_id, idx LIMIT {MAX_GAPS}) g
        LEFT JOIN (SELECT run_id, idx, market_ticker FROM frames
                   WHERE channel IN ({sequenced}) AND {window.where()}) f USING (run_id, idx)
        ORDER BY gap_ms, g.run_id, g.idx""",
    )
    total = rows[0].pop("total") if rows else 0
    for row in rows:
        row.pop("total", None)
        row["how"] = how_recovered(row)
    return rows, int(total)


def how_recovered(gap: dict[str, Any]) -> str:
    """In words: what made the subscription whole again after this discontinuity."""
    if gap["kind"] == "duplicate":
        return "duplicate dropped"
    if gap["recovered"] is None:
        return "not resyncable: the channel has no snapshots"
    if not gap["recovered"]:
        return "not recovered"
    if gap["resync_command"] == "update_subscription":
        return "get_snapshot, then a snapshot"
    if gap["resync_command"] == "subscribe":
        return "resubscribed" + (", then a snapshot" if gap["resync_ms"] else "")
    return "a snapshot"
