"""Bad configs and command lines: one clear line, exit 2, never a traceback.

Every subcommand given a wrong argument or config says what is wrong in one line and
exits 2, and no generated TOML (or junk) gets past the config loader as anything but
a `ConfigError`. `KT_FUZZ_EXAMPLES` scales the example counts.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalshi_tape.cli import build_parser, main
from tests.stream.harness import wire

from .test_fuzz_frames import _containers, examples, record_through_the_journal

# What tests/recorder/test_record.py, tests/replay/test_replay_cli.py,
# tests/replay/test_query_cli.py, tests/replay/server/test_server_cli.py and
# test_capture_cli.py already check is not repeated here; these are the other ways in.


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "afile").write_text("not a key, not a capture\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "bad-utf8.toml").write_bytes(b"[storage]\nroot = '\xff\xfe'\n")
    (tmp_path / "wrong-type.toml").write_text('[storage]\ncommit_interval_ms = "fast"\n')
    (tmp_path / "not-a-table.toml").write_text("storage = 5\n")
    (tmp_path / "huge.toml").write_text(f"[sim]\nmarkets = {10**40}\n")
    trades = [wire.trade(1, i + 1, "KX-A") for i in range(3)]
    record_through_the_journal(trades, tmp_path / "cap")
    return {"tmp": str(tmp_path), "afile": str(tmp_path / "afile"),
            "empty": str(tmp_path / "empty"), "cap": str(tmp_path / "cap" / "root")}  # fmt: skip


RECORD = ("record", "--sim", "--no-progress", "--duration", "1s", "--root", "{tmp}/d")
WSS = ("--url", "wss://localhost:9/trade-api/ws/v2", "--key-id", "K")
BAD_COMMAND_LINES = [
    ((*RECORD, "--config", "{tmp}/bad-utf8.toml"), "--config: {tmp}/bad-utf8.toml is not UTF-8"),
    ((*RECORD, "--config", "{tmp}/conf.d"), "--config: cannot read {tmp}/conf.d"),
    ((*RECORD, "--config", "{tmp}/nope.toml"), "--config: no such file"),
    ((*RECORD, "--config", "{tmp}/wrong-type.toml"), "storage.commit_interval_ms: "),
    ((*RECORD, "--config", "{tmp}/not-a-table.toml"), "storage: "),
    ((*RECORD, "--config", "{tmp}/huge.toml"), "sim.markets: "),
    ((*RECORD, *WSS, "--key-file", "{tmp}/missing.pem"), "--key-file: cannot read"),
    ((*RECORD, *WSS, "--key-file", "{empty}"), "is not a regular file"),
    ((*RECORD, "--url", "ws://example.com/x"), "plain ws:// to example.com"),
    ((*RECORD, "--metrics-port", "70000"), "--metrics-port: "),
    ((*RECORD, "--sim-rate", "fast"), "argument --sim-rate"),
    ((*RECORD, "--env", "staging"), "argument --env: invalid choice"),
    ((*RECORD, "--channel", "orderbook_delta="), "--channel: "),
    ((*RECORD, "--nope"), "unrecognized arguments: --nope"),
    (("replay", "{afile}"), "ROOT: capture root"),
    (("replay", "{empty}"), "ROOT: {empty} is not a capture root"),
    (("replay", "{cap}", "-o", "{tmp}/no-dir/out.jsonl"), "--output: directory {tmp}/no-dir"),
    (("replay", "{cap}", "--format", "xml"), "argument --format: invalid choice"),
    (("replay", "{cap}", "--to", "yesterday"), "--to: 'yesterday' is not a time"),
    (("query", "{afile}", "SELECT 1"), "ROOT: capture root"),
    (("query", "{cap}", "SELECT 1", "--threads", "0"), "--threads: must be at least 1"),
    (("query", "{cap}", "SELECT 1", "--format", "xml"), "argument --format: invalid choice"),
    (("verify", "{afile}"), "ROOT: capture root"),
    (("verify", "{cap}", "--nope"), "unrecognized arguments: --nope"),
    (("inspect", "{afile}"), "ROOT: capture root"),
    (("inspect",), "the following arguments are required: ROOT"),
    (("serve", "--open", "--duration", "0.01", "--port", "70000"), "--port: 70000"),
    (("serve", "--open", "--duration", "0.01", "--rate", "-5"), "--sim-rate: "),
    (("serve", "--open", "--epoch-ms", "abc"), "argument --epoch-ms: invalid int"),
    (("serve", "--duration", "0.01", "--public-key", "k={afile}"), "not a PEM public key"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
]
#: Found here and fixed: each printed a traceback.
TRACEBACKS = [
    ((*RECORD[:-1], "{afile}"), "--root: {afile} is not a directory"),
    (("serve", "--open", "--duration", "0.01", "--host", "999.1.1.1"), "--host"),
    (("serve", "--open", "--duration", "0.01", "--truth", "{tmp}/no-dir/t.ndjson"), "--truth"),
    (("serve", "--open", "--duration", "-1"), "argument --duration: '-1' is not a duration"),
]  # fmt: skip


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`kalshi-tape ARGV` in this process, as the installed entry runs it."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own exit
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("argv", "message"), [*BAD_COMMAND_LINES, *TRACEBACKS])
def test_a_bad_config_or_argument_to_any_subcommand_is_one_clear_line_and_exit_2(
    places: dict[str, str], capsys: pytest.CaptureFixture[str], argv: tuple, message: str
) -> None:
    status, out, err = run_cli([a.format(**places) for a in argv], capsys)
    assert status == 2, (out, err)
    assert message.format(**places) in err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(("kalshi-tape: error: ", "kalshi-tape ")) and ": error: " in last


KNOWN_KEYS = ["root", "url", "commit_interval_ms", "segment_max_mb", "markets", "rate",
              "metrics_port", "status_interval_s", "ping_interval_s", "orderbook_delta",
              "ticker", "compaction", "capture_windows", "key_id", "environment",
              "memory_limit_mb"]  # fmt: skip
SECTIONS = ["connection", "channels", "storage", "jobs", "sim", "health", "live"]
toml_keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=6)
toml_leaves = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["all", "sim", "prod", "ws://127.0.0.1:1/x", "s3://b/p", "* * * * *"]),
)
toml_values = st.recursive(toml_leaves, _containers, max_leaves=6)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float(
            "inf") else repr(value)  # fmt: skip
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


section_names = st.sampled_from(SECTIONS) | st.text(min_size=1, max_size=6)
configs = st.tuples(
    st.dictionaries(section_names, toml_values, max_size=2),  # `storage = 5`: not a table
    st.dictionaries(section_names, st.dictionaries(toml_keys, toml_values, max_size=4), max_size=4),
)


def config_text(top: dict[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    lines = [f"{json.dumps(k)} = {_toml(v)}" for k, v in top.items() if k not in tables]
    for name, body in tables.items():
        lines += [
            f"[{json.dumps(name)}]",
            *(f"{json.dumps(k)} = {_toml(v)}" for k, v in body.items()),
        ]
    return "\n".join(lines) + "\n"


@settings(max_examples=examples(150), deadline=None)
@given(configs, st.binary(max_size=60))
def test_no_config_file_gets_past_the_loader_as_anything_but_a_config_error(
    config: tuple[dict[str, Any], dict[str, dict[str, Any]]], junk: bytes
) -> None:
    from recorder.service.command import build
    from schemas.errors import ConfigError

    text = config_text(*config).encode()
    with tempfile.TemporaryDirectory() as tmp:
        for content in (text, junk, text + junk):
            path = Path(tmp) / "record.toml"
            path.write_bytes(content)
            args = build_parser().parse_args(["record", "--config", str(path), "--root", tmp])
            error: ConfigError | None = None
            try:
                build(args)
            except ConfigError as exc:
                error = exc
            if error is not None:  # anything else escaping build() fails the test
                assert error.field and str(error).startswith(error.field)
