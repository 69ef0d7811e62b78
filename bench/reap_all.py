"""Run a command and wait for every process it leaves behind, so `/usr/bin/time` counts them all.

Usage: `python bench/reap_all.py CMD [ARGS...]`; exits with CMD's code.

Why: `/usr/bin/time` reports the CPU and peak RSS of the processes that were waited for. A Dagster run
forks its steps from a fork server (ty_pipeline/automation/executor.py) that the run process starts but
never waits for: when the run process exits, the fork server is orphaned and reaped by init, so its
steps' CPU and memory vanish from the figures (measured: a 300 MB step reported as 15 MB). As a child
subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`) this process inherits such orphans and reaps them, and
their usage then adds up in its own children's usage, which `time` reads.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    code = subprocess.run(argv).returncode
    while True:  # the orphans exit once the run process is gone (the fork server sees its pipe close)
        try:
            os.wait()
        except ChildProcessError:
            return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
