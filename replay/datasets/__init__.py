"""Research datasets derived from a capture: book changes, quotes, depth, trades, bars.

`derive(root, to=None, datasets=...)` writes them as Hive-partitioned Parquet (one
folder per dataset, `date=YYYY-MM-DD` partitions, exact decimals) that pyarrow,
DuckDB, Polars and Dask open as they are; a manifest makes a second run derive
only the days whose capture files changed. `table(root, name)` returns one as an
Arrow table (from the built files when fresh, else derived on the fly) and
`compute(root, name)` always derives. The rows follow the engine's own rules
(sequence, gaps, resyncs, reconnects, make-before-break): `driver` runs a real
`stream` engine for every decision and a compiled `kernel` (numba) for the
arithmetic. Schemas: `schema`; names such as "depth:10@1s" and "bars:1m": `spec`.
The names below load on first use: `import replay` loads neither numba nor DuckDB.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "derive": "replay.datasets.api",
    "table": "replay.datasets.api",
    "compute": "replay.datasets.api",
    "DeriveReport": "replay.datasets.api",
    "Spec": "replay.datasets.spec",
    "parse_specs": "replay.datasets.spec",
    "schema": "replay.datasets.schema",
    "SubunitValue": "replay.datasets.mirror",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
