"""A WebSocket server that writes pre-built frames as fast as TCP takes them (benchmarks only).

    python bench/_blaster.py N        # prints its URL, serves N mix frames to each client

docs/performance.md section 4.14: a Python websockets server cannot send much faster than
150k frames/s, so to measure a client beyond that the frames are framed once, up
front, and written to the transport in large slices. The handshake and the
`subscribed` acks use the websockets library; then the mix of `bench/mix.py`
(orderbook_delta sid 1, ticker sid 2, trade sid 3, seq continuous per sid) goes
out in one stream, and the server closes with 1000 when done.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mix import realistic_frames

CHANNEL_SID = {"orderbook_delta": 1, "ticker": 2, "trade": 3}


def frame(payload: bytes) -> bytes:
    """An unmasked server-to-client text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def build(n: int) -> bytes:
    return b"".join(frame(f) for f in realistic_frames(n).frames)


async def main(n: int) -> None:
    blob = build(n)

    async def handler(ws: ServerConnection) -> None:
        wanted = set(CHANNEL_SID)
        acked: set[str] = set()
        while acked != wanted:
            cmd = json.loads(await ws.recv())
            if cmd.get("cmd") != "subscribe":
                continue
            for channel in cmd["params"]["channels"]:
                sid = CHANNEL_SID.get(channel)
                if sid is not None:
                    ack = {"channel": channel, "sid": sid}
                    await ws.send(json.dumps({"id": cmd["id"], "type": "subscribed", "msg": ack}))
                    acked.add(channel)
        transport = ws.transport
        view = memoryview(blob)
        for start in range(0, len(view), 1 << 20):
            transport.write(view[start : start + (1 << 20)])
            while transport.get_write_buffer_size() > 8 << 20:  # noqa: ASYNC110 - polling a buffer
                await asyncio.sleep(0.001)
        while transport.get_write_buffer_size():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await ws.close(1000, "done")

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None,
                     ping_interval=None) as server:  # fmt: skip
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}/trade-api/ws/v2", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
