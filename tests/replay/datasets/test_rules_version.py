"""The rows `derive` gives for examples/sample, pinned to the rules version.

A day built by other rules is built again (`replay.datasets.manifest.RULES`), so a
change that gives other rows for the same capture must raise `RULES`: otherwise the
days users already built would keep the old rows as fresh. This test fails when the
rows change and the version does not; record the new digest under the new version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from replay.datasets import compute
from replay.datasets.manifest import RULES

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample"
DATASETS = ("book_changes", "quotes", "trades", "depth:3@1s", "bars:1s", "bars:1m")

#: RULES -> sha256 of the rows of DATASETS derived from examples/sample.
DIGESTS = {
    2: "86109aee55ecbbd007368ee0005b332d0971676c075b071e6137842c311016af",
    3: "80dae66956e2dab9c3f63477480d4b4cc0ab571f972fd78a6506dc7fc3fb69d9",
}


def _digest() -> str:
    h = hashlib.sha256()
    for name in DATASETS:
        table = compute(SAMPLE, name)
        h.update(name.encode())
        h.update(",".join(f"{f.name}:{f.type}" for f in table.schema).encode())
        for row in table.to_pylist():
            h.update(json.dumps(row, default=str, sort_keys=True).encode())
    return h.hexdigest()


def test_the_sample_s_rows_are_those_of_the_rules_version() -> None:
    digest = _digest()
    assert DIGESTS.get(RULES) == digest, (
        f"the derived rows of examples/sample changed (digest {digest}): if that is meant, "
        f"raise replay.datasets.manifest.RULES and record the digest under it"
    )
