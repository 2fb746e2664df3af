"""The speedrun recipe's switches: ReLU², QK-norm, zero-initialised output projections, Muon (the untied head is in
test_models.py) each change what they say; checkpoints record and restore them; a run resumes on the same curve
under Muon (under bf16 autocast: test_loop.py)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.attention import MultiHeadAttention
from labkit.blocks import FeedForward, relu_squared
from labkit.checkpoint import load_checkpoint
from labkit.corpus import CharCorpus
from labkit.loop import History, MuonAdamW, hidden_matrices, make_optimizer, run
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import TrainConfig
from labkit.train import load_trained, train

SWITCHED = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=16, position="rope", qk_norm=True,
                     activation="relu2", zero_init_proj=True, tie_head=False)
CONFIG = TrainConfig(steps=30, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_every=10, eval_batches=2)


def test_relu_squared_is_relu_then_square_in_the_feed_forward() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert relu_squared(x).tolist() == [0.0, 0.0, 0.0, 0.25, 9.0]
    torch.manual_seed(0)
    ff = FeedForward(8, 32, activation="relu2")
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(ff(x), ff.linear2(F.relu(ff.linear1(x)) ** 2))
    gelu = FeedForward(8, 32, activation="gelu")
    gelu.load_state_dict(ff.state_dict())
    assert not torch.allclose(gelu(x), ff(x))  # the switch changes the function, not only its name


@pytest.mark.parametrize("rotary", [False, True])
def test_qk_norm_gives_every_query_and_key_rms_1_and_bounds_the_scores(rotary: bool) -> None:
    torch.manual_seed(0)
    model = TinyGPT(replace(SWITCHED, position="rope" if rotary else "learned"))
    attn = model.blocks[0].self_attn
    x = 50 * torch.randn(3, 10, 16)  # a large input: without the norm the scores would be huge
    q, k, v = attn.queries_keys_values(x)
    for t in (q, k):  # RoPE rotates pairs of dims, so it keeps the norm
        torch.testing.assert_close(t.pow(2).mean(-1), torch.ones(3, 2, 10), atol=1e-4, rtol=0)
    d_head = attn.d_head
    assert (q @ k.transpose(-2, -1) / math.sqrt(d_head)).abs().max() <= math.sqrt(d_head) + 1e-4
    assert v.pow(2).mean() > 10  # values are left as they are
    plain = MultiHeadAttention(16, 2, bias=False)
    plain.load_state_dict(attn.state_dict())
    assert plain.queries_keys_values(x)[0].pow(2).mean() > 10  # the switch is what bounds them
    idx = torch.randint(0, 11, (2, 16))
    maps = model.attention_maps(idx)  # the naive path, with the norm, agrees with the fused one
    model.eval()
    with torch.no_grad():
        fused = model(idx)
        for block in model.blocks:
            block.self_attn.record_weights = True
        naive = model(idx)
    torch.testing.assert_close(fused, naive, atol=1e-5, rtol=0)
    torch.testing.assert_close(maps.sum(-1), torch.ones_like(maps.sum(-1)))


def test_zero_init_proj_makes_every_block_start_as_the_identity() -> None:
    torch.manual_seed(0)
    model = TinyGPT(replace(SWITCHED, position="learned"))
    writers = [w for block in model.blocks for w in (block.self_attn.out_proj.weight, block.ff.linear2.weight)]
    assert all((w == 0).all() for w in writers)
    idx = torch.randint(0, 11, (2, 16))
    with torch.no_grad():  # the model starts as a bigram table: embedding → final norm → output layer
        torch.testing.assert_close(model.eval()(idx), model.lm_head(model.norm(model.pos_emb(model.token_emb(idx)))))
    default = TinyGPT(replace(SWITCHED, zero_init_proj=False))
    assert all(block.self_attn.out_proj.weight.std() > 0 for block in default.blocks)
    loss = F.cross_entropy(model.train()(idx).flatten(0, 1), idx.roll(-1, 1).flatten())
    loss.backward()  # zero weights still get a gradient, so they learn
    assert all(w.grad.abs().sum() > 0 for w in writers)


def test_muon_takes_the_blocks_matrices_and_adamw_everything_else() -> None:
    model = TinyGPT(SWITCHED)
    optimizer = make_optimizer(model, replace(CONFIG, optimizer="muon"))
    assert isinstance(optimizer, MuonAdamW)
    muon = [p for group in optimizer.muon.param_groups for p in group["params"]]
    adamw = [p for group in optimizer.adamw.param_groups for p in group["params"]]
    names = {id(p): name for name, p in model.named_parameters()}
    expected = {f"blocks.{i}.{part}.weight" for i in range(2)
                for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                             "ff.linear1", "ff.linear2")}
    assert {names[id(p)] for p in muon} == expected
    assert {names[id(p)] for p in adamw} == set(names.values()) - expected  # embeddings, output layer, norms
    assert "lm_head.weight" in {names[id(p)] for p in adamw} and "token_emb.weight" in {names[id(p)] for p in adamw}
    assert hidden_matrices(model) == muon
    assert isinstance(make_optimizer(model, CONFIG), torch.optim.AdamW)  # the default is untouched
    with pytest.raises(ValueError, match="Linear has no `blocks`: use optimizer='adamw'"):
        make_optimizer(nn.Linear(3, 3), replace(CONFIG, optimizer="muon"))
    with pytest.raises(ValueError, match=r"TrainConfig.optimizer must be one of \('adamw', 'muon'\), got 'sgd'"):
        TrainConfig(optimizer="sgd")


def test_a_muon_step_is_an_orthogonalised_update_the_size_of_adamws() -> None:
    torch.manual_seed(0)
    model = TinyGPT(replace(SWITCHED, zero_init_proj=False))
    config = replace(CONFIG, optimizer="muon", weight_decay=0.0, steps=1, warmup_steps=0)
    weight = model.blocks[0].ff.linear1.weight  # (64, 16)
    before = weight.detach().clone()
    idx = torch.randint(0, 11, (4, 16))

    def loss(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(x)[:, :-1].flatten(0, 1), x[:, 1:].flatten())

    loss(model, idx).backward()
    gradient = torch.linalg.svdvals(weight.grad)  # (16,), largest first
    model.zero_grad()
    run(model, config, batch=lambda step: idx, loss=loss, progress=False)
    update = torch.linalg.svdvals(weight.detach() - before)
    assert gradient[-2] / gradient[0] < 0.01  # the gradient's spectrum is steep (its last direction is empty) ...
    assert (update[:-1] / update[0]).min() > 0.4  # ... Newton–Schulz lifts every direction it has to a like size
    rms = (weight.detach() - before).pow(2).mean().sqrt()
    assert 0.1 * config.lr < rms < 0.3 * config.lr  # scaled to AdamW's update size (0.2 · lr), at the schedule's lr


def test_checkpoints_record_and_restore_the_switches_and_muon_resumes_on_the_same_curve(
        shakespeare: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = CharCorpus.from_text(shakespeare[:20000])
    shape = replace(SWITCHED, vocab_size=corpus.tokenizer.vocab_size)
    config = replace(CONFIG, optimizer="muon")

    def fresh(seed: int) -> TinyGPT:
        torch.manual_seed(seed)
        return TinyGPT(shape)

    straight = train(fresh(0), corpus, config, progress=False)
    path = tmp_path / "run.safetensors"

    def stop_at_20(history: History) -> None:
        if history.step == 20:
            raise KeyboardInterrupt

    first = train(fresh(0), corpus, config, checkpoint=path, on_eval=stop_at_20, progress=False)
    assert first.interrupted and first.step == 20
    saved = load_checkpoint(path)
    assert saved["meta"]["train_config"]["optimizer"] == "muon"
    assert {k: saved["meta"]["model_config"][k] for k in ("qk_norm", "activation", "zero_init_proj", "tie_head")} == \
        dict(qk_norm=True, activation="relu2", zero_init_proj=True, tie_head=False)
    assert len(saved["optim"]["param_groups"]) == 3  # Muon's group, then AdamW's two
    model, _ = load_trained(path)
    assert model.config == shape
    resumed = train(fresh(99), corpus, config, checkpoint=path, resume=True, progress=False)
    assert resumed.train_loss == pytest.approx(straight.train_loss, abs=1e-5)
    assert resumed.eval_val == pytest.approx(straight.eval_val, abs=1e-5)
    capsys.readouterr()
    adamw = replace(CONFIG, optimizer="adamw")
    with pytest.raises(ValueError, match="parameter groups"):  # an AdamW run cannot take Muon's state
        train(fresh(0), corpus, adamw, checkpoint=path, resume=True, progress=False)


def test_bad_switches_are_refused_and_configs_saved_before_them_load_with_them_off() -> None:
    with pytest.raises(ValueError, match=r"activation must be one of \('gelu', 'relu', 'relu2'\), got 'silu'"):
        GPTConfig(vocab_size=11, activation="silu")
    for name in ("qk_norm", "zero_init_proj"):
        with pytest.raises(ValueError, match=f"GPTConfig.{name} must be True or False, got 1"):
            GPTConfig(vocab_size=11, **{name: 1})
    with pytest.raises(ValueError, match="qk_norm must be True or False, got 'yes'"):
        MultiHeadAttention(8, 2, qk_norm="yes")
    old = {k: v for k, v in SWITCHED.to_dict().items() if k not in ("qk_norm", "activation", "zero_init_proj")}
    loaded = GPTConfig(**old)
    assert (loaded.qk_norm, loaded.activation, loaded.zero_init_proj) == (False, "gelu", False)
