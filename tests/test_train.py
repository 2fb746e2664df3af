"""Training: the schedule, real learning on Tiny Shakespeare, checkpoints, exact resumption, data parallelism."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import labkit.train
from labkit.checkpoint import load_checkpoint, save_checkpoint
from labkit.corpus import CharCorpus
from labkit.models import GPTConfig, TinyGPT
from labkit.train import PRESETS, TrainConfig, History, load_trained, lr_at, train

SMOKE_SHAPE, SMOKE = PRESETS["smoke"]
SHORT = replace(SMOKE, steps=40, eval_every=10, eval_batches=2)


@pytest.fixture(scope="module")
def corpus(shakespeare: str) -> CharCorpus:
    return CharCorpus.from_text(shakespeare)


def _model(corpus: CharCorpus, seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **SMOKE_SHAPE))


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr() -> None:
    c = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=100)
    assert lr_at(0, c) == pytest.approx(1e-5)
    assert lr_at(49, c) == pytest.approx(5e-4)
    assert lr_at(100, c) == pytest.approx(1e-3)
    assert lr_at(550, c) == pytest.approx(5.5e-4)  # halfway through the decay: the mean of lr and min_lr
    assert lr_at(1000, c) == pytest.approx(1e-4)
    assert all(lr_at(s, c) >= lr_at(s + 1, c) for s in range(100, 1000))


def test_bad_train_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="steps must be a positive int"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="0 < min_lr <= lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)


def test_smoke_preset_learns_characters(corpus: CharCorpus) -> None:
    history = train(_model(corpus), corpus, SMOKE, progress=False)
    assert history.step == SMOKE.steps and len(history.train_loss) == SMOKE.steps
    assert history.train_loss[0] == pytest.approx(math.log(65), abs=0.15)  # uniform guess at the start
    assert history.eval_val[-1] < 2.7  # well below the 3.3 of character frequencies alone


def test_the_same_seed_gives_the_same_loss_curve_twice(corpus: CharCorpus) -> None:
    runs = [train(_model(corpus, seed=7), corpus, replace(SHORT, seed=3), progress=False) for _ in range(2)]
    assert runs[0].train_loss == runs[1].train_loss and runs[0].eval_val == runs[1].eval_val  # bit for bit
    other = train(_model(corpus, seed=8), corpus, replace(SHORT, seed=3), progress=False)
    assert other.train_loss != runs[0].train_loss  # the seed matters: the test can tell runs apart


def test_checkpoint_resume_reproduces_the_uninterrupted_curve(corpus: CharCorpus, tmp_path: Path) -> None:
    straight = train(_model(corpus), corpus, SHORT, progress=False)

    path = tmp_path / "run.safetensors"

    def stop_at_20(history: History) -> None:
        if history.step == 20:
            raise KeyboardInterrupt

    first = train(_model(corpus), corpus, SHORT, checkpoint=path, on_eval=stop_at_20, progress=False)
    assert first.interrupted and first.step == 20
    assert load_checkpoint(path)["meta"]["history"]["step"] == 20

    resumed = train(_model(corpus, seed=99), corpus, SHORT, checkpoint=path, resume=True, progress=False)
    assert resumed.step == SHORT.steps
    assert resumed.train_loss == pytest.approx(straight.train_loss, abs=1e-5)
    assert resumed.eval_val == pytest.approx(straight.eval_val, abs=1e-5)


@pytest.mark.parametrize("interrupt_at", [5, 24, 37])
def test_interrupt_inside_a_step_keeps_the_last_checkpoint_and_resumes_the_same_curve(
        corpus: CharCorpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt_at: int) -> None:
    straight = train(_model(corpus), corpus, SHORT, progress=False)
    path = tmp_path / "run.safetensors"
    real_generator = labkit.train.batch_generator

    def generator_then_interrupt(seed: int, step: int) -> torch.Generator:
        if step == interrupt_at:  # Ctrl-C inside this step, before its forward pass
            raise KeyboardInterrupt
        return real_generator(seed, step)

    monkeypatch.setattr(labkit.train, "batch_generator", generator_then_interrupt)
    history = train(_model(corpus), corpus, SHORT, checkpoint=path, progress=False)
    assert history.interrupted and history.step == interrupt_at
    last_eval = interrupt_at // SHORT.eval_every * SHORT.eval_every
    assert _checkpoint_step(path) == last_eval  # 0: none written yet, and the resumed run starts afresh
    if last_eval:
        model, tokenizer = load_trained(path)
        assert tokenizer.chars == corpus.tokenizer.chars and not model.training

    monkeypatch.setattr(labkit.train, "batch_generator", real_generator)
    # with a checkpoint, other initial weights prove the weights come from it; without one, the rerun starts afresh
    fresh = _model(corpus, seed=99 if last_eval else 0)
    resumed = train(fresh, corpus, SHORT, checkpoint=path, resume=True, progress=False)
    assert resumed.train_loss == pytest.approx(straight.train_loss, abs=1e-5)
    assert resumed.eval_val == pytest.approx(straight.eval_val, abs=1e-5)


def _checkpoint_step(path: Path) -> int:
    try:
        return load_checkpoint(path)["meta"]["history"]["step"]
    except FileNotFoundError:
        return 0


def test_sigkill_between_steps_leaves_a_checkpoint_that_resumes_the_same_curve(tmp_path: Path) -> None:
    """kill -9 the command-line trainer three times at different points; each time the newest checkpoint loads,
    and the run resumed from it ends on the loss curve of a run that was never killed."""
    common = ["--preset", "smoke", "--steps", "240", "--eval-every", "10"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight.safetensors"
    subprocess.run([sys.executable, "-m", "labkit.train", *common, "--out", str(straight)], check=True, env=env,
                   capture_output=True, timeout=120)
    path = tmp_path / "killed.safetensors"
    for kill_after in (40, 120, 200):
        process = subprocess.Popen([sys.executable, "-m", "labkit.train", *common, "--out", str(path), "--resume"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _checkpoint_step(path) < kill_after and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        assert kill_after <= _checkpoint_step(path) < 240  # the newest checkpoint loads
    subprocess.run([sys.executable, "-m", "labkit.train", *common, "--out", str(path), "--resume"], check=True,
                   env=env, capture_output=True, timeout=120)
    one, resumed = (load_checkpoint(p)["meta"]["history"] for p in (straight, path))
    assert resumed["step"] == one["step"] == 240
    assert resumed["train_loss"] == pytest.approx(one["train_loss"], abs=1e-5)
    assert resumed["eval_val"] == pytest.approx(one["eval_val"], abs=1e-5)


def test_a_checkpoint_from_another_configuration_is_refused(corpus: CharCorpus, tmp_path: Path) -> None:
    path = tmp_path / "run.safetensors"
    train(_model(corpus), corpus, replace(SHORT, steps=10), checkpoint=path, progress=False)
    bigger = TinyGPT(GPTConfig(vocab_size=65, block_size=64, n_layer=3, n_head=2, d_model=64))
    with pytest.raises(ValueError, match="holds a model with config"):
        train(bigger, corpus, SHORT, checkpoint=path, resume=True, progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoints_raise_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, TinyGPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, d_model=8)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    """torchrun, gloo, 2 CPU processes: each takes half of every global batch; the losses match one process."""
    common = ["--preset", "smoke", "--steps", "12", "--eval-every", "6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    single = tmp_path / "single.safetensors"
    double = tmp_path / "double.safetensors"
    subprocess.run([sys.executable, "-m", "labkit.train", *common, "--out", str(single)], check=True, env=env,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    "-m", "labkit.train", *common, "--out", str(double)], check=True, env=env, capture_output=True)
    assert load_checkpoint(double)["meta"]["processes"] == 2
    one = load_checkpoint(single)["meta"]["history"]
    two = load_checkpoint(double)["meta"]["history"]
    assert two["step"] == one["step"] == 12
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=1e-4)
    assert two["eval_val"] == pytest.approx(one["eval_val"], abs=1e-4)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.train", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=120)


def test_a_run_too_big_for_memory_is_refused_before_it_starts(corpus: CharCorpus) -> None:
    with pytest.raises(MemoryError, match=r"needs about .* GiB on cpu .* but only .* GiB is free; choose a smaller"):
        train(_model(corpus), corpus, replace(SHORT, batch_size=10**7), progress=False)
    result = _cli("--preset", "smoke", "--batch-size", "10000000", "--out", os.devnull)
    assert result.returncode == 1
    assert result.stderr.startswith("labkit.train: error: this run needs about") and "Traceback" not in result.stderr


def test_the_cli_names_a_malformed_data_file(tmp_path: Path) -> None:
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_bytes(b"ROMEO:\n\xfe\n")
    result = _cli("--preset", "smoke", "--out", str(tmp_path / "run.safetensors"), env={"LABKIT_DATA": str(tmp_path)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"input.txt, line 2: not UTF-8 text" in result.stderr
