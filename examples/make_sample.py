"""Regenerate examples/sample/: about a minute of the simulated exchange, recorded for real.

    python examples/make_sample.py        # writes examples/sample/ (replacing it)

The sample lives outside `data/`, the default recording root, so that readers of a
recording (DuckDB, Polars, pyarrow over `data/`) never count the sample's rows with it.

The recorder (the same code as `kalshi-tape record`) records an in-process simulated
exchange (seed 7, 8 markets) that injects a few faults: two server closes (1011), one
dropped TCP connection, sequence gaps and duplicates. Midway the recorder also rotates
its connection make-before-break, as a scheduled rotation would. The market is
deterministic from the seed; times and the run id are those of the recording.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from recorder import Recorder, load_config  # noqa: E402
from replay import verify_capture  # noqa: E402
from replay.server import ServerConfig, SimServer, Switches, parse_fault  # noqa: E402
from schemas.record import JOURNAL_DIR, STATUS_FILE  # noqa: E402

SECONDS = 60
FAULTS = ("close:1011@at=15s", "drop@at=20s", "close:1011@at=12s", "gap@p=0.0005",
          "dup@p=0.0005")  # fmt: skip


async def record(root: Path) -> None:
    server_config = ServerConfig(
        auth="open", rate_fps=300, markets=8, seed=7, settle_every_s=20.0,
        faults=tuple(parse_fault(f) for f in FAULTS),
        switches=Switches(orderbook_without_tickers="all"),
    )  # fmt: skip
    async with SimServer(server_config) as server:
        config = load_config(None, {
            "connection.url": server.url,
            "channels.orderbook_delta": "all",
            "channels.ticker": "all",
            "channels.trade": "all",
            "channels.market_lifecycle_v2": "all",
            "storage.root": str(root),
            "storage.segment_max_age_s": 20,
            "storage.checkpoint_interval_s": 5,
            "jobs.compaction": "",
            "live.reconnect_delay_s": 0.2,
        })  # fmt: skip
        sessions = []

        async def on_ready(session: object) -> None:
            sessions.append(session)

        recorder = Recorder(config, duration_s=SECONDS, progress=True, on_ready=on_ready)
        runner = asyncio.create_task(recorder.run())
        await asyncio.sleep(SECONDS / 2)
        if sessions:
            await sessions[0].rotate()  # type: ignore[attr-defined]
        await runner


def main() -> int:
    target = HERE / "sample"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sample"
        asyncio.run(record(root))
        shutil.rmtree(root / JOURNAL_DIR, ignore_errors=True)
        (root / STATUS_FILE).unlink(missing_ok=True)
        report = verify_capture(root)
        if report.corrupt:
            print("the sample does not verify:", report.problems(), file=sys.stderr)
            return 1
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(root, target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"wrote {target} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
