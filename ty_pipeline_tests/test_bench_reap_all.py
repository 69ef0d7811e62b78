"""bench/reap_all.py: `/usr/bin/time` over a command that forks from a fork server must count the forks.

bench_scale.py reports each step's peak RSS and CPU this way; without the reaper, a Dagster run's steps
(forked from a fork server the run never waits for) would vanish from those figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ty_pipeline_tests.conftest import IN_CI

REAP_ALL = Path(__file__).resolve().parents[1] / "bench" / "reap_all.py"
# A parent that touches ~5 MiB and a fork-server child that touches 200 MiB, as a run and its step do.
PROGRAM = """
import multiprocessing as mp

def step():
    block = bytearray(200 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1

if __name__ == "__main__":
    process = mp.get_context("forkserver").Process(target=step)
    process.start()
    process.join()
    raise SystemExit(process.exitcode)
"""


def _peak_mib(argv: list[str], tmp_path: Path) -> float:
    usage = tmp_path / "usage"
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(usage), *argv], check=True, timeout=120)
    return int(usage.read_text().split()[-1]) / 1024


def test_the_reaper_makes_time_count_what_a_fork_server_ran(tmp_path: Path) -> None:
    if not Path("/usr/bin/time").exists():
        message = "GNU time is not installed (Debian package time), which bench_scale.py needs"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    script = tmp_path / "run.py"
    script.write_text(PROGRAM)
    assert _peak_mib([sys.executable, str(script)], tmp_path) < 150  # the step is invisible to time alone
    assert _peak_mib([sys.executable, str(REAP_ALL), sys.executable, str(script)], tmp_path) >= 200


def test_the_reaper_passes_the_exit_code_on(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REAP_ALL), sys.executable, "-c", "raise SystemExit(3)"], timeout=60)
    assert done.returncode == 3
