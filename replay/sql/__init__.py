"""DuckDB SQL over a capture, and the checks built on it: verify and inspect.

`connection` opens a read-only, sandboxed DuckDB over a root's files with the
views (`connect`, `run_query`, limits on time and memory); `views`, `derived` and
`build` write the views' SQL; `remote` reads object storage through pyarrow;
`output` renders results; `verify` checks a capture's integrity and `summary`
describes it; `cli` is `kalshi-tape query`, `verify` and `inspect`. DuckDB loads
only when one of these names is first used.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "connect": "replay.sql.connection",
    "run_query": "replay.sql.connection",
    "VIEW_NAMES": "replay.sql.connection",
    "DEFAULT_TIMEOUT_S": "replay.sql.connection",
    "QueryTimeout": "replay.sql.connection",
    "QueryMemoryLimit": "replay.sql.connection",
    "QueryRejected": "replay.sql.connection",
    "verify_capture": "replay.sql.verify",
    "VerifyReport": "replay.sql.verify",
    "render_verify_report": "replay.sql.verify",
    "summarize_capture": "replay.sql.summary",
    "CaptureSummary": "replay.sql.summary",
    "render_summary": "replay.sql.summary",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
