"""`python -m replay.server`: the same as `kalshi-tape serve`."""

from __future__ import annotations

import argparse
import sys

from replay.server.command import FAULT_HELP, add_arguments, run
from schemas.errors import ConfigError, OperationalError


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replay.server",
        description="Run the simulated Kalshi exchange (the same as `kalshi-tape serve`).",
        epilog=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args()
    try:
        return run(args)
    except ConfigError as exc:
        print(f"replay.server: error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"replay.server: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
