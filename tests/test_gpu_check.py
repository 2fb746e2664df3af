"""`python3 lab.py gpu`, the GPU check: on a machine without CUDA it says so and stops, and its dry run (every step
at smoke size on the CPU) runs each step and prints the summary table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "LABKIT_FAST": "0"}, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the check runs for real")
def test_without_a_gpu_the_check_says_so_and_points_to_the_dry_run() -> None:
    done = _run()
    assert done.returncode == 2
    assert "torch sees no CUDA GPU here" in done.stderr and "--dry-run" in done.stderr


def test_the_dry_run_runs_every_step_on_the_cpu_and_prints_one_table() -> None:
    done = _run("--dry-run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "gpu check (dry run) on cpu" in out
    table = out[out.index("\nstep "):]
    for row in ("CUDA-only tests", "tiny GPT, 'smoke' preset", "attention fwd+bwd, bf16, seq 256, causal",
                "SST-2 fine-tuning, 'smoke' preset"):
        assert row in table, row
    assert "skipped" in table  # the CUDA tests were collected and skipped, not missing
    assert "tokens/s; MFU n/a" in table and "naive" in table and "examples/s; dev accuracy" in table
    assert "NO" not in table.split("\n", 2)[2]
