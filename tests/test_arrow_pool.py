"""The commands read captures with Arrow's jemalloc pool (bounded replay memory) by default."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "import kalshi_tape.cli, pyarrow; print(pyarrow.default_memory_pool().backend_name)"


def pool_of_a_fresh_command_process(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def test_the_commands_use_jemalloc_by_default() -> None:
    assert pool_of_a_fresh_command_process() == "jemalloc"


def test_a_pool_chosen_in_the_environment_is_kept() -> None:
    assert pool_of_a_fresh_command_process(ARROW_DEFAULT_MEMORY_POOL="system") == "system"
