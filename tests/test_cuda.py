"""The GPU path, on a CUDA GPU only (`python3 lab.py gpu` runs these; without a GPU they skip): the fused attention
kernel in bf16, the tiny GPT trained under bf16 autocast, compiled, and with Muon, and a run resumed on the GPU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from labkit.attention import fast_attention, naive_attention
from labkit.corpus import CharCorpus
from labkit.device import bf16_is_fast
from labkit.loop import History
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import TrainConfig
from labkit.train import train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CONFIG = TrainConfig(steps=40, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_every=20, eval_batches=2,
                     bf16=True)


@pytest.fixture(scope="module")
def corpus(shakespeare: str) -> CharCorpus:
    return CharCorpus.from_text(shakespeare[:50000])


def fresh(corpus: CharCorpus, **switches) -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, d_model=64,
                             **switches)).cuda()


@pytest.mark.parametrize("causal", [False, True])
def test_the_fused_kernel_matches_naive_attention_in_bf16(causal: bool) -> None:
    q, k, v = (torch.randn(4, 8, 256, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    expected, _ = naive_attention(q.float(), k.float(), v.float(), is_causal=causal)
    torch.testing.assert_close(fast_attention(q, k, v, is_causal=causal).float(), expected, atol=2e-2, rtol=0)


@pytest.mark.parametrize("options", [dict(), dict(compile=True), dict(optimizer="muon")], ids=["eager", "compiled",
                                                                                                 "muon"])
def test_the_tiny_gpt_learns_on_the_gpu_under_bf16_autocast(corpus: CharCorpus, options: dict) -> None:
    assert bf16_is_fast("cuda")  # Ampere or later: autocast is on
    history = train(fresh(corpus), corpus, replace(CONFIG, **options), device=torch.device("cuda"), progress=False)
    assert history.eval_val[-1] < history.eval_val[0] - 0.3 and history.tokens_per_s > 0


def test_a_run_stopped_on_the_gpu_resumes_on_the_same_curve(corpus: CharCorpus, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    device = torch.device("cuda")
    straight = train(fresh(corpus), corpus, CONFIG, device=device, progress=False)
    path = tmp_path / "gpu.safetensors"

    def stop_at_20(history: History) -> None:
        if history.step == 20:
            raise KeyboardInterrupt

    train(fresh(corpus), corpus, CONFIG, device=device, checkpoint=path, on_eval=stop_at_20, progress=False)
    resumed = train(fresh(corpus), corpus, CONFIG, device=device, checkpoint=path, resume=True, progress=False)
    # the fused kernels' backward passes may add in another order from run to run: equal to bf16's precision
    assert resumed.train_loss == pytest.approx(straight.train_loss, abs=2e-2)
    capsys.readouterr()
