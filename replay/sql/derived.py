"""Views derived across channels: frames, events, control, connections and gaps.

* `frames`: every column of every file, plus the partition `date` and `recv_time`.
  `channel` and `date` come from the Hive path, so `WHERE channel = 'trade'` or a
  date filter skips the other partitions' files. `opcode` and `feed` are NULL where a
  file predates them.
* `events`: the `_session` records with their JSON detail (`schemas.record.Event`) and
  their `feed`.
* `control`: acks, replies and every command we sent, with ids, params and errors.
* `connections`: one row per (run_id, conn): its feed, open and close times, close code
  and reason, frames in and out. Connection numbers are unique within a run across its
  feeds, so (run_id, conn) names a connection.
* `gaps`: every seq discontinuity per wire subscription on a sequenced channel
  (docs/protocol.md sections 4 and 8.16), decided as the engine decides: a `gap`
  (seq past the expected one; `missing` counts from the highest seq seen, so a
  stray lower frame in between does not make received messages look lost), a
  `reset` (seq below it) or a `duplicate` (seq = previous); a frame at the highest
  seq + 1 goes on from before a stray lower frame and is no discontinuity. With the resync that
  followed: the next `update_subscription get_snapshot` naming the sid, or
  `subscribe` of the channel, on that connection, and the next `orderbook_snapshot`
  on that sid; when that connection closed first, the reconnect's `subscribe` of the
  channel (a later connection, after the close) recovers the books. `recovery_s` runs
  to the snapshot, else to the subscribe that replaced the subscription; NULL when
  nothing recovered. The `subscribed` acks ride in the same ordered stream, so a frame
  right after an ack starts a new subscription: a sid number reused after an
  unsubscribe starts afresh. (One window pass; an ASOF join to the acks cost 3x.)

This module builds SQL text from the listing; it must not know how files are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from replay.sql.build import event_field, every_column, parquet_source
from schemas.channels import BOOK_CHANNELS, SEQUENCED_CHANNELS, Channel
from schemas.events import Attempt, AttemptFailed, Closed, Opened

if TYPE_CHECKING:
    from replay.reading.layout import CaptureListing

__all__ = ["derived_statements"]

_RECV_TIME: Final = "make_timestamptz(recv_ns // 1000) AS recv_time"


def _frames(source: str) -> str:
    return (
        "CREATE VIEW frames AS SELECT run_id, idx, conn, recv_ns, mono_ns, dir, channel, type, "
        f'sid, seq, market_ticker, raw, opcode, feed, "date", {_RECV_TIME} FROM {source}'
    )


def _events(session: str) -> str:
    return (
        "CREATE VIEW events AS SELECT run_id, idx, conn, feed, recv_ns, "
        f'{_RECV_TIME}, "date", type, '
        f"TRY(CAST(TRY(decode(raw)) AS JSON)) AS detail FROM {session} WHERE dir = 'event'"
    )


def _control(control: str) -> str:
    return (
        f'CREATE VIEW control AS SELECT run_id, idx, conn, recv_ns, {_RECV_TIME}, "date", '
        "dir, type, sid, seq, TRY_CAST(j->>'id' AS BIGINT) AS id, j->'params' AS params, "
        "CASE WHEN type = 'subscribed' THEN j->'msg'->>'channel' END AS ack_channel, "
        "CASE WHEN type = 'error' THEN TRY_CAST(j->'msg'->>'code' AS INTEGER) END AS error_code, "
        "CASE WHEN type = 'error' THEN j->'msg'->>'msg' END AS error_message, "
        "j->'msg' AS msg "
        f"FROM (SELECT *, TRY(CAST(TRY(decode(raw)) AS JSON)) AS j FROM {control})"
    )


def _connections(session: str, wire: str) -> str:
    """`session`: every column of the `_session` files (the feed of a connection is
    that of its events)."""
    attempt, opened, closed, failed = (
        f"'{cls.name}'" for cls in (Attempt, Opened, Closed, AttemptFailed)
    )
    return f"""CREATE VIEW connections AS
WITH ev AS (
    SELECT run_id, conn, feed, type, idx, recv_ns, TRY(CAST(TRY(decode(raw)) AS JSON)) AS d
    FROM {session} WHERE dir = 'event' AND conn > 0
), e AS (
    SELECT run_id, conn, arg_min(feed, idx) AS feed,
        min(recv_ns) FILTER (WHERE type = {attempt}) AS attempt_ns,
        min(recv_ns) FILTER (WHERE type = {opened}) AS open_ns,
        max(recv_ns) FILTER (WHERE type = {closed}) AS close_ns,
        arg_min({event_field(Opened, "url")}, idx) FILTER (WHERE type = {opened}) AS url,
        arg_min({event_field(Opened, "standby", "BOOLEAN")}, idx)
            FILTER (WHERE type = {opened}) AS standby,
        arg_max({event_field(Closed, "code", "INTEGER")}, idx)
            FILTER (WHERE type = {closed}) AS close_code,
        arg_max({event_field(Closed, "reason")}, idx)
            FILTER (WHERE type = {closed}) AS close_reason,
        arg_max({event_field(Closed, "disconnect_reason")}, idx)
            FILTER (WHERE type = {closed}) AS disconnect_reason,
        count(*) FILTER (WHERE type = {failed}) AS errors
    FROM ev GROUP BY run_id, conn
), f AS (
    SELECT run_id, conn,
        count(*) FILTER (WHERE dir = 'in') AS frames_in,
        count(*) FILTER (WHERE dir = 'out') AS frames_out,
        min(recv_ns) AS first_ns, max(recv_ns) AS last_ns
    FROM {wire} WHERE dir IN ('in', 'out') GROUP BY run_id, conn
)
SELECT run_id, conn, feed,
    open_ns IS NOT NULL AS opened,
    make_timestamptz(attempt_ns // 1000) AS attempt_time,
    make_timestamptz(open_ns // 1000) AS open_time,
    make_timestamptz(close_ns // 1000) AS close_time,
    close_code, close_reason, disconnect_reason, url, standby, COALESCE(errors, 0) AS errors,
    COALESCE(frames_in, 0) AS frames_in, COALESCE(frames_out, 0) AS frames_out,
    COALESCE(frames_in, 0) + COALESCE(frames_out, 0) AS frames,
    make_timestamptz(first_ns // 1000) AS first_frame_time,
    make_timestamptz(last_ns // 1000) AS last_frame_time,
    (close_ns - open_ns) / 1e9 AS duration_s
FROM e FULL OUTER JOIN f USING (run_id, conn)"""


def _gaps(sequenced: str, control: str, book: str, session: str) -> str:
    books = ", ".join(f"'{c}'" for c in sorted(BOOK_CHANNELS))
    return f"""CREATE VIEW gaps AS
WITH stream AS (
    SELECT run_id, conn, sid, channel, idx, seq, recv_ns, false AS is_ack FROM {sequenced}
    WHERE dir = 'in' AND sid IS NOT NULL AND seq IS NOT NULL
    UNION ALL
    SELECT run_id, conn, sid, NULL, idx, NULL, NULL, true FROM {control}
    WHERE dir = 'in' AND type = 'subscribed' AND sid IS NOT NULL
), subs AS (  -- an ack starts a subscription: number them per sid
    SELECT *, sum(is_ack::INTEGER) OVER (PARTITION BY run_id, conn, sid ORDER BY idx
        ROWS UNBOUNDED PRECEDING) AS sub
    FROM stream
), w AS (  -- each frame's predecessor, and the highest seq before it (the high-water mark)
    SELECT *, lag(seq) OVER p AS prev_seq, lag(idx) OVER p AS prev_idx,
        lag(recv_ns) OVER p AS prev_ns,
        max(seq) OVER (p ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS high
    FROM subs WHERE NOT is_ack WINDOW p AS (PARTITION BY run_id, conn, sid, sub ORDER BY idx)
), g AS MATERIALIZED (  -- the few discontinuities, materialized once
    -- As the engine decides: a frame at the high-water mark + 1 goes on from before a
    -- stray lower frame (nothing missing); a gap counts from the mark when it passes it.
    SELECT run_id, conn, sid, channel, idx, seq, recv_ns, prev_seq, prev_idx, prev_ns,
        ref + 1 AS expected_seq,
        CASE WHEN seq = prev_seq THEN 'duplicate' WHEN seq > ref + 1 THEN 'gap'
            ELSE 'reset' END AS kind
    FROM (SELECT *, CASE WHEN seq <= high THEN prev_seq ELSE high END AS ref FROM w)
    WHERE prev_seq IS NOT NULL AND seq <> prev_seq + 1 AND seq <> high + 1
), cmds AS (
    SELECT run_id, conn, idx, recv_ns, type,
        TRY(json_extract(TRY(decode(raw)), '$.params')) AS params
    FROM {control} WHERE dir = 'out' AND type IN ('update_subscription', 'subscribe')
), closes AS (
    SELECT run_id, conn, idx AS close_idx FROM {session} WHERE type = '{Closed.name}'
), bg AS (  -- book gaps, with the close of their connection that came after, if any
    SELECT g.run_id, g.conn, g.sid, g.idx, g.channel, k.close_idx FROM g
    ASOF LEFT JOIN closes k ON g.run_id = k.run_id AND g.conn = k.conn AND g.idx < k.close_idx
    WHERE g.kind <> 'duplicate' AND g.channel IN ({books})
), resync AS (
    SELECT g.run_id, g.conn, g.sid, g.idx, min(c.idx) AS cmd_idx,
        arg_min(c.type, c.idx) AS cmd_type, arg_min(c.recv_ns, c.idx) AS cmd_ns,
        bool_or(c.type = 'subscribe') AS resubscribed,
        min(c.recv_ns) FILTER (WHERE c.type = 'subscribe') AS sub_ns
    FROM bg g JOIN cmds c ON c.run_id = g.run_id AND c.idx > g.idx AND (
        (c.conn = g.conn AND c.type = 'update_subscription'
            AND c.params->>'action' = 'get_snapshot'
            AND (TRY_CAST(c.params->>'sid' AS INTEGER) = g.sid
                 OR list_contains(TRY_CAST(c.params->'sids' AS INTEGER[]), g.sid)))
        OR (c.type = 'subscribe'
            AND list_contains(TRY_CAST(c.params->'channels' AS VARCHAR[]), g.channel)
            AND (c.conn = g.conn OR c.idx > g.close_idx)))  -- same connection, or a reconnect
    GROUP BY g.run_id, g.conn, g.sid, g.idx
), snaps AS (
    SELECT run_id, conn, sid, idx AS snap_idx, recv_ns AS snap_ns FROM {book}
    WHERE dir = 'in' AND type = 'orderbook_snapshot' AND sid IS NOT NULL
), joined AS (
    SELECT g.*, r.cmd_idx, r.cmd_type, r.cmd_ns, r.resubscribed, r.sub_ns, s.snap_idx,
        s.snap_ns
    FROM g LEFT JOIN resync r USING (run_id, conn, sid, idx)
    ASOF LEFT JOIN snaps s
        ON g.run_id = s.run_id AND g.conn = s.conn AND g.sid = s.sid AND g.idx < s.snap_idx
)
SELECT run_id, conn, sid, channel, kind, prev_seq, expected_seq, seq,
    CASE WHEN kind = 'gap' THEN seq - expected_seq ELSE 0 END AS missing,
    prev_idx, idx,
    make_timestamptz(prev_ns // 1000) AS prev_time,
    make_timestamptz(recv_ns // 1000) AS gap_time,
    cmd_type AS resync_command, cmd_idx AS resync_command_idx,
    make_timestamptz(cmd_ns // 1000) AS resync_command_time,
    CASE WHEN kind <> 'duplicate' THEN snap_idx END AS resync_snapshot_idx,
    CASE WHEN kind <> 'duplicate' THEN make_timestamptz(snap_ns // 1000) END
        AS resync_snapshot_time,
    CASE WHEN kind = 'duplicate' THEN true
        WHEN channel NOT IN ({books}) THEN NULL  -- no snapshots there: nothing to resync
        ELSE snap_idx IS NOT NULL OR COALESCE(resubscribed, false) END AS recovered,
    CASE WHEN kind = 'duplicate' OR channel NOT IN ({books}) THEN NULL
        ELSE (COALESCE(snap_ns, sub_ns) - recv_ns) / 1e9 END AS recovery_s
FROM joined"""


def derived_statements(listing: CaptureListing) -> list[str]:
    """CREATE VIEW statements for frames, events, control, connections and gaps."""

    def source(channels: frozenset[str] | tuple[str, ...] | None = None) -> str:
        return parquet_source(listing.sources(channels))

    wire = sorted({f.channel for f in listing.files} - {Channel.SESSION, Channel.CHECKPOINT})
    session, control = source((Channel.SESSION,)), source((Channel.CONTROL,))
    # `feed` is selected from the session files: every column (NULL where a file lacks it).
    session_all = every_column(listing.sources((Channel.SESSION,)))
    return [
        _frames(every_column(listing.sources(None))),
        _events(session_all),
        _control(control),
        _connections(session_all, source(tuple(wire))),
        _gaps(source(SEQUENCED_CHANNELS), control, source((Channel.ORDERBOOK_DELTA,)), session),
    ]
