"""The defaults of `kalshi-tape record` that its `--help` shows, as plain constants.

`config` builds its models from these (the one place each is written), and the
command line shows them without loading pydantic or the models.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ENVIRONMENT", "LOG_INTERVAL_S", "ROOT", "SIM_MARKETS", "SIM_RATE", "SIM_SEED"]

#: `connection.environment`: which Kalshi to record when neither the config nor a flag says.
ENVIRONMENT: Final = "prod"
#: `storage.root`: the capture root.
ROOT: Final = "data"
#: `sim.markets`, `sim.rate` (frames/s) and `sim.seed`: the simulated exchange of `--sim`.
SIM_MARKETS: Final = 20
SIM_RATE: Final = 1000
SIM_SEED: Final = 1
#: `health.log_interval_s`: a status line in the log this often.
LOG_INTERVAL_S: Final = 60.0
