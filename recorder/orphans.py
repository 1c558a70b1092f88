"""Children of the recorder die with it, even when it is killed with -9.

A recorder killed with SIGKILL runs no cleanup, so its children must notice on their
own: the simulated exchange (`recorder.service.sim`) and the publisher (`recorder.
publish_process`). On Linux the kernel does it: `prctl(PR_SET_PDEATHSIG)` sends the
child a signal when the thread that started it ends (both are started from the
recorder's main thread). Elsewhere, and as a second line on Linux, a child can poll
`parent_gone`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "parent_gone"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only;
    elsewhere nothing). Safe between fork and exec (`preexec_fn`)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, sig)


def parent_gone(parent_pid: int) -> bool:
    """True when this process's parent is no longer `parent_pid` (it died: we were
    adopted by init or a subreaper)."""
    return os.getppid() != parent_pid
