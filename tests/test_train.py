"""Training the tiny GPT: real learning on Tiny Shakespeare, checkpoints, exact resumption (also after SIGKILL and
inside a step), data parallelism, the command line. The loop's own behaviour, for every trainer: test_loop.py."""

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
from labkit.presets import get_preset
from labkit.train import load_trained, train

SMOKE_SHAPE, SMOKE = get_preset("tiny_gpt", "smoke").shape, get_preset("tiny_gpt", "smoke").train
SHORT = replace(SMOKE, steps=40, eval_every=10, eval_batches=2)


@pytest.fixture(scope="module")
def corpus(shakespeare: str) -> CharCorpus:
    return CharCorpus.from_text(shakespeare)


def _model(corpus: CharCorpus, seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **SMOKE_SHAPE))


def test_smoke_preset_learns_characters(corpus: CharCorpus) -> None:
    history = train(_model(corpus), corpus, SMOKE, progress=False)
    assert history.step == SMOKE.steps and len(history.train_loss) == SMOKE.steps
    assert history.train_loss[0] == pytest.approx(math.log(65), abs=0.15)  # uniform guess at the start
    assert history.eval_val[-1] < 2.7  # well below the 3.3 of character frequencies alone


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
    assert resumed["losses"]["loss"] == pytest.approx(one["losses"]["loss"], abs=1e-5)
    assert resumed["evals"]["val"] == pytest.approx(one["evals"]["val"], abs=1e-5)


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
    assert two["losses"]["loss"] == pytest.approx(one["losses"]["loss"], abs=1e-4)
    assert two["evals"]["val"] == pytest.approx(one["evals"]["val"], abs=1e-4)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.train", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=120)


def test_a_corpus_with_more_characters_than_the_model_knows_is_refused(corpus: CharCorpus) -> None:
    small = TinyGPT(GPTConfig(vocab_size=10, **SMOKE_SHAPE))
    with pytest.raises(ValueError, match=r"the corpus has 65 characters but the model's vocabulary only 10"):
        train(small, corpus, SHORT, progress=False)


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
    assert "input.txt, line 2: not UTF-8 text" in result.stderr


def test_load_or_train_trains_notebook_04s_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABKIT_FAST", "1")
    path = tmp_path / "04-tiny-gpt.safetensors"
    model, tokenizer = labkit.train.load_or_train(path)
    assert "not found: training the 'smoke' preset of notebook 04 now" in capsys.readouterr().out
    assert path.exists() and tokenizer.vocab_size == 65 and not model.training
    assert model.config.block_size == get_preset("tiny_gpt", "smoke").shape["block_size"]
    again, _ = labkit.train.load_or_train(path)  # now read back, not trained
    assert "not found" not in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
