"""The one training loop: its schedule and config, what it records, and, for every trainer that checkpoints (the
tiny GPT, the tiny BERT, the encoder-decoder), the same curve for the same seed, exact resumption after Ctrl-C and
after kill -9, the same seed and Ctrl-C again under bf16 autocast, and the stop before a non-finite loss reaches the
weights."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from labkit.checkpoint import load_checkpoint
from labkit.corpus import CharCorpus
from labkit.device import bf16_is_fast
from labkit.encoder_decoder import EncoderDecoder, EncoderDecoderConfig, train_encoder_decoder
from labkit.loop import History, _Smoothed, lr_at, run
from labkit.models import BertConfig, GPTConfig, TinyBERT, TinyGPT
from labkit.presets import TrainConfig
from labkit.pretraining import pretrain
from labkit.train import train
from labkit.translation_data import make_date_translation

CONFIG = TrainConfig(steps=30, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_every=10, eval_batches=2)


# ----------------------------------------------------------------------------- schedule, config, records


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr() -> None:
    c = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=100)
    assert lr_at(0, c) == pytest.approx(1e-5)
    assert lr_at(49, c) == pytest.approx(5e-4)
    assert lr_at(100, c) == pytest.approx(1e-3)
    assert lr_at(550, c) == pytest.approx(5.5e-4)  # halfway through the decay: the mean of lr and min_lr
    assert lr_at(1000, c) == pytest.approx(1e-4)
    assert all(lr_at(s, c) >= lr_at(s + 1, c) for s in range(100, 1000))


def test_the_linear_schedule_is_fine_tunings_warm_up_then_straight_down_to_zero() -> None:
    c = TrainConfig(steps=100, lr=1e-4, min_lr=0.0, warmup_steps=6, schedule="linear")
    hugging_face = [(s + 1) / 6 if s < 6 else (100 - s) / (100 - 6) for s in range(100)]  # its LambdaLR factors
    assert [lr_at(s, c) for s in range(100)] == pytest.approx([1e-4 * f for f in hugging_face])


def test_bad_train_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="steps must be a positive int"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="0 <= min_lr <= lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)
    with pytest.raises(ValueError, match=r"schedule must be one of \('cosine', 'linear'\), got 'step'"):
        TrainConfig(schedule="step")


def test_history_pads_a_part_missing_on_a_step_with_nan() -> None:
    history = History()
    history.record_step({"loss": 3.0, "mlm": 3.0})
    history.record_step({"loss": 2.5, "mlm": 2.0, "nsp": 0.5})
    history.record_step({"loss": 1.0, "mlm": 1.0})
    assert history.step == 3 and history.train_loss == [3.0, 2.5, 1.0]
    assert history.losses["mlm"] == [3.0, 2.0, 1.0]
    assert math.isnan(history.losses["nsp"][0]) and history.losses["nsp"][1] == 0.5
    assert math.isnan(history.losses["nsp"][2])
    history.record_eval({"train": 1.5, "val": 1.7})
    assert history.eval_steps == [3] and history.eval_train == [1.5] and history.eval_val == [1.7]
    assert History(**history.to_dict()) == history  # what a checkpoint stores rebuilds it


def test_the_bar_shows_running_averages_and_skips_values_not_computed() -> None:
    bar = _Smoothed(decay=0.5)
    assert bar.update({"loss": 4.0, "nsp": math.nan}) == {"loss": "4.000"}  # no nsp=nan
    assert bar.update({"loss": 2.0, "nsp": 1.0}) == {"loss": "3.000", "nsp": "1.000"}
    assert bar.update({"loss": 2.0, "nsp": math.nan}) == {"loss": "2.500", "nsp": "1.000"}


def test_a_caller_built_optimizer_steps_at_the_schedule_and_a_batch_of_any_shape_reaches_the_loss() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    stepped_at, step = [], optimizer.step

    def recorded_step(*args, **kwargs):
        stepped_at.append(optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    optimizer.step = recorded_step
    config = TrainConfig(steps=4, batch_size=2, lr=0.1, min_lr=0.0, warmup_steps=2, schedule="linear")
    shapes = []

    def loss(net: nn.Module, batch: dict[str, tuple[Tensor, Tensor]]) -> Tensor:
        x, y = batch["pair"]
        shapes.append((tuple(x.shape), tuple(y.shape)))
        return (net(x) - y).pow(2).mean()

    history = run(model, config, batch=lambda step: {"pair": (torch.ones(2, 3) * step, torch.zeros(2, 1))},
                  loss=loss, optimizer=optimizer, progress=False)
    assert history.step == 4 and not history.evals  # no evaluate: nothing recorded at evaluations
    assert stepped_at == [lr_at(s, config) for s in range(4)] == pytest.approx([0.05, 0.1, 0.1, 0.05])
    assert shapes == [((2, 3), (2, 1))] * 4
    assert history.tokens_per_s > 0  # counted from the first tensor of each batch


def test_the_time_limit_counts_training_and_leaves_evaluations_out() -> None:
    model = nn.Linear(3, 1)
    config = TrainConfig(steps=10_000, batch_size=2, lr=0.01, min_lr=0.0, eval_every=1, time_limit_s=0.3)
    history = run(model, config, batch=lambda step: torch.ones(2, 3), loss=lambda net, x: net(x).pow(2).mean(),
                  evaluate=lambda: time.sleep(0.05) or {"val": 0.0}, progress=False)
    # 0.05 s an evaluation after every step: a wall-clock limit would stop after 6 steps; training steps take ms
    assert history.step > 20 and history.eval_s >= 0.05 * history.step
    assert history.elapsed_s - history.eval_s >= 0.3 and history.elapsed_s > history.eval_s
    assert history.tokens_per_s > 2 * history.step / history.elapsed_s  # throughput of training time only


# ----------------------------------------------------------------------------- every trainer that checkpoints


class RandomPairs:
    """Pretraining batches of random ids: one masked position a row, half of the rows sentence pairs."""

    vocab = 30

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        ids = torch.randint(5, self.vocab, (batch_size, 12), generator=generator)
        labels = torch.full_like(ids, -100)
        where = torch.randint(1, 12, (batch_size,), generator=generator)
        labels[torch.arange(batch_size), where] = ids[torch.arange(batch_size), where]
        ids[torch.arange(batch_size), where] = 4
        nsp = torch.randint(0, 2, (batch_size,), generator=generator)
        nsp[::2] = -100
        return dict(input_ids=ids, token_type_ids=torch.zeros_like(ids), attention_mask=torch.ones_like(ids),
                    mlm_labels=labels, nsp_labels=nsp)

    def heldout_batches(self, batch_size: int) -> list[dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(99)
        return [self.batch("val", batch_size, generator) for _ in range(2)]


@dataclass
class Trainer:
    """One of the lab's trainers on a few seconds of data: how to build its model, train it, and break it."""

    build: Callable[[int], nn.Module]  # seed → a fresh model
    fit: Callable[..., History]  # (model, config, **loop options) → History
    poison: Callable[[nn.Module], None]  # make every later forward pass give NaN


def _seeded(make: Callable[[], nn.Module]) -> Callable[[int], nn.Module]:
    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return make()
    return build


def gpt_trainer(text: str) -> Trainer:
    corpus = CharCorpus.from_text(text[:20000])
    return Trainer(_seeded(lambda: TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=16,
                                                     n_layer=1, n_head=2, d_model=16, dropout=0.1))),
                   lambda model, config, **options: train(model, corpus, config, progress=False, **options),
                   lambda model: nn.init.constant_(model.norm.weight, math.nan))


def bert_trainer() -> Trainer:
    data = RandomPairs()
    return Trainer(_seeded(lambda: TinyBERT(BertConfig(vocab_size=data.vocab, max_len=12, n_layer=1, n_head=2,
                                                       d_model=16))),
                   lambda model, config, **options: pretrain(model, data, config, progress=False, **options),
                   lambda model: nn.init.constant_(model.emb_norm.weight, math.nan))


def encoder_decoder_trainer() -> Trainer:
    data = make_date_translation(n_train=200, n_heldout=20, seed=0)
    config = EncoderDecoderConfig(len(data.source), len(data.target), n_head=2, d_model=16, d_ff=32, dropout=0.1)
    return Trainer(_seeded(lambda: EncoderDecoder(config)),
                   lambda model, config, **options: train_encoder_decoder(model, data, config, progress=False,
                                                                          **options),
                   lambda model: nn.init.constant_(model.decoder_norm.weight, math.nan))


@pytest.fixture(scope="module", params=["tiny GPT", "tiny BERT", "encoder-decoder"])
def trainer(request, shakespeare: str) -> Trainer:
    if request.param == "tiny GPT":
        return gpt_trainer(shakespeare)
    return bert_trainer() if request.param == "tiny BERT" else encoder_decoder_trainer()


def test_the_same_seed_gives_the_same_curve_twice(trainer: Trainer) -> None:
    runs = [trainer.fit(trainer.build(7), replace(CONFIG, seed=3)) for _ in range(2)]
    assert runs[0].losses == runs[1].losses and runs[0].evals == runs[1].evals  # bit for bit
    other = trainer.fit(trainer.build(8), replace(CONFIG, seed=3))
    assert other.train_loss != runs[0].train_loss  # the seed matters: the test can tell runs apart


def test_ctrl_c_keeps_the_last_checkpoint_and_the_resumed_run_ends_on_the_same_curve(
        trainer: Trainer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    straight = trainer.fit(trainer.build(0), CONFIG)
    path = tmp_path / "run.safetensors"

    def stop_at_20(history: History) -> None:
        if history.step == 20:
            raise KeyboardInterrupt

    first = trainer.fit(trainer.build(0), CONFIG, checkpoint=path, on_eval=stop_at_20)
    assert first.interrupted and first.step == 20
    assert f"interrupted at step 20; the checkpoint {path} (step 20) is intact" in capsys.readouterr().out
    assert load_checkpoint(path)["meta"]["history"]["step"] == 20

    resumed = trainer.fit(trainer.build(99), CONFIG, checkpoint=path, resume=True)  # other weights: from the file
    assert resumed.step == CONFIG.steps and not resumed.interrupted
    assert resumed.train_loss == pytest.approx(straight.train_loss, abs=1e-5)
    assert resumed.evals.keys() == straight.evals.keys()
    for name, values in straight.evals.items():
        assert resumed.evals[name] == pytest.approx(values, abs=1e-5, nan_ok=True), name


@pytest.mark.skipif(not bf16_is_fast("cpu"), reason="bf16 autocast is on only where the CPU multiplies bf16")
def test_under_bf16_autocast_the_same_seed_repeats_and_a_resumed_run_ends_on_the_same_curve(
        trainer: Trainer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = replace(CONFIG, bf16=True)
    runs = [trainer.fit(trainer.build(0), config) for _ in range(2)]
    assert runs[0].losses == runs[1].losses and runs[0].evals == runs[1].evals  # bit for bit
    fp32 = trainer.fit(trainer.build(0), CONFIG)
    assert fp32.train_loss != runs[0].train_loss  # autocast was on: bf16 rounds differently ...
    assert runs[0].train_loss[-1] == pytest.approx(fp32.train_loss[-1], abs=0.1)  # ... and learns alike
    path = tmp_path / "bf16.safetensors"

    def stop_at_10(history: History) -> None:
        if history.step == 10:
            raise KeyboardInterrupt

    trainer.fit(trainer.build(0), config, checkpoint=path, on_eval=stop_at_10)
    resumed = trainer.fit(trainer.build(99), config, checkpoint=path, resume=True)
    assert resumed.train_loss == pytest.approx(runs[0].train_loss, abs=1e-5)
    capsys.readouterr()


def test_a_non_finite_loss_stops_before_it_reaches_the_weights(trainer: Trainer, tmp_path: Path) -> None:
    model, path = trainer.build(0), tmp_path / "run.safetensors"
    poisoned: list[nn.Parameter] = []

    def poison_at_10(history: History) -> None:
        if history.step == 10:
            before = {id(p) for p in model.parameters() if not torch.isfinite(p).all()}
            trainer.poison(model)
            poisoned.extend(p for p in model.parameters() if id(p) not in before and not torch.isfinite(p).all())

    with pytest.raises(FloatingPointError, match=rf"became nan at step 10 .* the checkpoint {path} holds step 10"):
        trainer.fit(model, CONFIG, checkpoint=path, on_eval=poison_at_10)
    assert len(poisoned) == 1
    assert all(torch.isfinite(p).all() for p in model.parameters() if p is not poisoned[0])  # no step taken
    saved = load_checkpoint(path)
    assert saved["meta"]["history"]["step"] == 10 and all(torch.isfinite(t).all() for t in saved["model"].values())


# The command-line trainer's kill -9 test is in test_train.py; here the other two trainers, run by this script in a
# process of their own that waits a little at every evaluation, so that a kill can land between any two of them.
KILLED_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
import test_loop
trainer = getattr(test_loop, {factory!r})()
trainer.fit(trainer.build(0), test_loop.LONG, checkpoint={path!r}, resume=True,
            on_eval=lambda history: time.sleep(0.05))
"""
LONG = replace(CONFIG, steps=200)


def _checkpoint_step(path: Path) -> int:
    try:
        return load_checkpoint(path)["meta"]["history"]["step"]
    except (FileNotFoundError, ValueError):  # not written yet
        return 0


@pytest.mark.parametrize("factory", ["bert_trainer", "encoder_decoder_trainer"])
def test_kill_9_leaves_a_checkpoint_that_resumes_the_same_curve(factory: str, tmp_path: Path) -> None:
    trainer = globals()[factory]()
    straight = trainer.fit(trainer.build(0), LONG)
    path = tmp_path / "run.safetensors"
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), factory=factory, path=str(path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _checkpoint_step(path) < 60 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 60 <= _checkpoint_step(path) < LONG.steps  # the newest checkpoint loads
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, timeout=120)
    resumed = load_checkpoint(path)["meta"]["history"]
    assert resumed["step"] == LONG.steps
    assert resumed["losses"]["loss"] == pytest.approx(straight.train_loss, abs=1e-5)
    for name, values in straight.evals.items():
        assert resumed["evals"][name] == pytest.approx(values, abs=1e-5, nan_ok=True), name
