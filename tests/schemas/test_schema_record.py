"""The capture record helpers: column derivation, partition paths, run ids."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from schemas.arrow import CAPTURE_SCHEMA, OPTIONAL_COLUMNS, complete
from schemas.channels import ALL_CHANNELS, Channel
from schemas.errors import PartitionError
from schemas.events import Closed
from schemas.record import (
    COLUMNS,
    MALFORMED_TYPE,
    ColumnDeriver,
    Dir,
    new_run_id,
    partition_dir,
    partition_file,
    utc_date,
    validate_run_id,
)
from tests.schemas.corpus import load_cases

RUN = "20261121T131600Z-1a2b3c4d"


def _frame(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _ack(channel: str, sid: int) -> bytes:
    return _frame({"id": 1, "type": "subscribed", "msg": {"channel": channel, "sid": sid}})


EVENT_LIFECYCLE = _frame(
    {
        "type": "event_lifecycle",
        "sid": 6,
        "seq": 2,
        "msg": {
            "event_ticker": "KXMVENFLSINGLEGAME-S2026B1C2D3E4F5",
            "exchange_index": 1,
            "title": "t",
            "subtitle": "",
            "collateral_return_type": "",
            "series_ticker": "KXMVENFLSINGLEGAME",
        },
    }
)

# --- ColumnDeriver ------------------------------------------------------------------------


def test_event_lifecycle_takes_the_channel_of_its_sids_ack() -> None:
    deriver = ColumnDeriver()
    ack = deriver.derive(Dir.IN, _ack("multivariate_market_lifecycle", 6), conn=1)
    assert (ack.channel, ack.type, ack.sid) == (Channel.CONTROL, "subscribed", 6)
    derived = deriver.derive(Dir.IN, EVENT_LIFECYCLE, conn=1)
    assert derived.channel == Channel.MULTIVARIATE_MARKET_LIFECYCLE
    assert (derived.type, derived.sid, derived.seq) == ("event_lifecycle", 6, 2)


def test_event_lifecycle_without_an_ack_falls_back_to_market_lifecycle_v2() -> None:
    deriver = ColumnDeriver()
    deriver.derive(Dir.IN, _ack("multivariate_market_lifecycle", 6), conn=1)
    # Same sid number on another connection: that ack does not apply.
    assert deriver.derive(Dir.IN, EVENT_LIFECYCLE, conn=2).channel == Channel.MARKET_LIFECYCLE_V2


def test_a_closed_connection_forgets_its_acks() -> None:
    deriver = ColumnDeriver()
    deriver.derive(Dir.IN, _ack("multivariate_market_lifecycle", 6), conn=1)
    close = Closed(code=1006, disconnect_reason="network").to_bytes()
    assert deriver.derive(Dir.EVENT, close, conn=1).channel == Channel.SESSION
    assert deriver.derive(Dir.IN, EVENT_LIFECYCLE, conn=1).channel == Channel.MARKET_LIFECYCLE_V2


def test_an_unknown_type_on_a_known_sid_takes_that_sids_channel() -> None:
    deriver = ColumnDeriver()
    deriver.derive(Dir.IN, _ack("communications", 20), conn=1)
    derived = deriver.derive(Dir.IN, _frame({"type": "rfq_amended", "sid": 20, "seq": 3}), conn=1)
    assert (derived.channel, derived.type) == (Channel.COMMUNICATIONS, "rfq_amended")
    other = deriver.derive(Dir.IN, _frame({"type": "rfq_amended", "sid": 21}), conn=1)
    assert other.channel == Channel.UNKNOWN


def test_singular_private_types_map_to_their_plural_channels() -> None:
    deriver = ColumnDeriver()
    for case in load_cases():
        if case.file in ("user_order", "market_position"):
            derived = deriver.derive(Dir.IN, case.raw.encode(), conn=1)
            expected = "user_orders" if case.file == "user_order" else "market_positions"
            assert derived.channel == expected


def test_an_inbound_frame_that_does_not_decode_goes_to_unknown_with_a_reason() -> None:
    derived = ColumnDeriver().derive(Dir.IN, b"\xff{not json", conn=1)
    assert (derived.channel, derived.type) == (Channel.UNKNOWN, MALFORMED_TYPE)
    assert derived.error is not None
    assert "not JSON" in derived.error


def test_a_command_we_sent_goes_to_control_under_its_name() -> None:
    raw = _frame({"id": 3, "cmd": "update_subscription", "params": {"sid": 2, "action": "x"}})
    derived = ColumnDeriver().derive(Dir.OUT, raw, conn=1)
    assert (derived.channel, derived.type, derived.sid) == (
        Channel.CONTROL,
        "update_subscription",
        None,
    )


def test_every_corpus_frame_derives_a_channel_of_the_fixed_list() -> None:
    deriver = ColumnDeriver()
    for case in load_cases():
        derived = deriver.derive(Dir.IN, case.raw.encode(), conn=1)
        assert derived.channel in ALL_CHANNELS
        assert derived.channel != Channel.UNKNOWN, case.id
        assert derived.type == case.file


# --- partitions ---------------------------------------------------------------------------


def test_partition_dir_is_hive_style() -> None:
    assert partition_dir("orderbook_delta", "2026-11-21") == (
        "channel=orderbook_delta/date=2026-11-21"
    )
    assert partition_file("_control", "2026-11-21", RUN, 7) == (
        f"channel=_control/date=2026-11-21/{RUN}-00000007.parquet"
    )
    assert partition_file("ticker", "2026-11-21", RUN, 0, "c1").endswith("-00000000-c1.parquet")


@pytest.mark.parametrize(
    "channel", ["../ticker", "ticker/..", "..", "channel=ticker", "Ticker", "", "user_order"]
)
def test_partition_paths_reject_channels_outside_the_fixed_list(channel: str) -> None:
    with pytest.raises(PartitionError):
        partition_dir(channel, "2026-11-21")


@pytest.mark.parametrize(
    "date",
    ["2026-02-30", "2026-13-01", "26-11-21", "2026-11-21/../x", "../2026-11-21", "2026-11-21\n"],
)
def test_partition_paths_reject_bad_dates(date: str) -> None:
    with pytest.raises(PartitionError):
        partition_dir("ticker", date)


@pytest.mark.parametrize(
    "run_id", ["../20261121T131600Z-1a2b3c4d", "20261121T131600Z-1a2b3c4d/..", f"{RUN}\n", "x"]
)
def test_partition_file_rejects_a_bad_run_id(run_id: str) -> None:
    with pytest.raises(PartitionError):
        partition_file("ticker", "2026-11-21", run_id, 0)


@pytest.mark.parametrize("suffix", ["../x", "A", "x" * 17, "c-1"])
def test_partition_file_rejects_a_bad_suffix(suffix: str) -> None:
    with pytest.raises(PartitionError):
        partition_file("ticker", "2026-11-21", RUN, 0, suffix)


def test_partition_file_rejects_a_negative_segment() -> None:
    with pytest.raises(PartitionError):
        partition_file("ticker", "2026-11-21", RUN, -1)


def test_run_ids_sort_by_start_time_and_validate() -> None:
    first = new_run_id(1_795_266_960_000_000_000, b"\x1a\x2b\x3c\x4d")
    later = new_run_id(1_795_266_961_000_000_000, b"\x00\x00\x00\x00")
    assert first == RUN
    assert first < later
    assert validate_run_id(first) == first
    with pytest.raises(ValueError):
        new_run_id(0, b"\x01")


def test_utc_date_is_the_calendar_date_in_utc() -> None:
    assert utc_date(1_795_305_599_999_999_999) == "2026-11-21"
    assert utc_date(1_795_305_600_000_000_000) == "2026-11-22"


def test_the_columns_are_fixed() -> None:
    assert COLUMNS[-3:] == ("raw", "opcode", "feed")
    assert len(COLUMNS) == 14


def test_feed_is_the_last_column_optional_and_completed_as_nulls() -> None:
    feed = CAPTURE_SCHEMA.field("feed")
    assert (CAPTURE_SCHEMA.names[-1], feed.type, feed.nullable) == ("feed", pa.int8(), True)
    assert {"opcode", "feed"} <= OPTIONAL_COLUMNS
    old = pa.table({"idx": pa.array([1, 2], pa.int64())})  # a file written before `feed`
    got = complete(old, ["idx", "feed"])
    assert got.column_names == ["idx", "feed"]
    assert got.column("feed").type == pa.int8()
    assert got.column("feed").to_pylist() == [None, None]
    with pytest.raises(KeyError, match="raw"):
        complete(old, ["idx", "raw"])  # not optional: a file without it is not a capture file
