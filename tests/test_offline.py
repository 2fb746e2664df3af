"""Offline, and with a hub that accepts connections but never answers, the lab's command-line entry points
resolve what they need within seconds and say which source they used. (Every notebook runs against the same
silent hub in tests/test_notebooks.py; the modules' own fallbacks are tested in test_data.py and test_assets.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.data import HUB_TIMEOUT_S

REPO = Path(__file__).resolve().parent.parent
SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _run(args: list[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return done, time.perf_counter() - start


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env["OMP_NUM_THREADS"] = "1"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.parametrize("hub", ["silent", "switched off"])
def test_the_trainer_without_a_data_folder_falls_back_within_seconds(tmp_path: Path, silent_hub: str,
                                                                      hub: str) -> None:
    env = _env(LABKIT_DATA=None, HF_ENDPOINT=silent_hub, HF_HUB_OFFLINE="1" if hub == "switched off" else None)
    done, seconds = _run(["-m", "labkit.train", "--preset", "smoke", "--steps", "2", "--eval-every", "2",
                          "--out", str(tmp_path / "run.safetensors")], env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tinyshakespeare from Python's reference documentation (pydoc_data.topics) - NOT Shakespeare" in done.stdout
    assert (tmp_path / "run.safetensors").exists()
    # the hub check is cut off after HUB_TIMEOUT_S; the rest is start-up and two tiny steps
    print(f"labkit.train, hub {hub}: {seconds:.1f} s")
    assert seconds < 60


def test_the_trainer_reads_the_data_folder_without_asking_the_hub(tmp_path: Path, silent_hub: str,
                                                                   data_dir: Path) -> None:
    env = _env(LABKIT_DATA=str(data_dir), HF_ENDPOINT=silent_hub)
    done, _ = _run(["-m", "labkit.train", "--preset", "smoke", "--steps", "2", "--eval-every", "2",
                    "--out", str(tmp_path / "run.safetensors")], env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"tinyshakespeare from LABKIT_DATA ({data_dir}" in done.stdout, done.stdout[:1000]


def test_the_environment_check_never_waits_for_the_hub(silent_hub: str) -> None:
    done, seconds = _run(["-m", "labkit.doctor", "--no-probe"], _env(HF_ENDPOINT=silent_hub), timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "everything required is here" in done.stdout
    print(f"labkit.doctor: {seconds:.1f} s")
    assert seconds < 30


def test_a_model_resolves_to_the_packaged_encoder_within_the_bound(silent_hub: str) -> None:
    code = ("import time; from labkit.assets import load_tokenizer; t = time.perf_counter(); load_tokenizer('bert-base-"
            "uncased'); print(f'took {time.perf_counter() - t:.2f}')")
    done, _ = _run(["-c", code], _env(HF_ENDPOINT=silent_hub, HF_HOME=None), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "packaged all-MiniLM-L6-v2" in done.stdout, done.stdout
    took = float(done.stdout.rsplit("took ", 1)[1])
    assert took < HUB_TIMEOUT_S + 3
