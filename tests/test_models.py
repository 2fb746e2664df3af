"""TinyGPT: shapes, causality, tied weights, attention maps, its five position schemes and its errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from labkit.blocks import count_parameters
from labkit.checkpoint import save_checkpoint
from labkit.corpus import CharCorpus, CharTokenizer
from labkit.models import FORMULA_LENGTH_FACTOR, POSITIONS, SINUSOIDAL_SCALE, GPTConfig, TinyGPT
from labkit.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, alibi_bias, sinusoidal_table
from labkit.presets import TrainConfig
from labkit.train import load_trained, train

CONFIG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=32)


@pytest.fixture
def model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(CONFIG).eval()


def test_logits_shape_and_tied_embedding(model: TinyGPT) -> None:
    idx = torch.randint(0, 11, (3, 10))
    assert model(idx).shape == (3, 10, 11)
    assert model.lm_head.weight is model.token_emb.weight
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_future_tokens_do_not_change_past_logits(model: TinyGPT) -> None:
    idx = torch.randint(0, 11, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 11
    assert torch.allclose(model(idx)[0, :8], model(changed)[0, :8], atol=1e-6)
    assert not torch.allclose(model(idx)[0, 8:], model(changed)[0, 8:])


def test_attention_maps_are_causal_distributions(model: TinyGPT) -> None:
    maps = model.attention_maps(torch.randint(0, 11, (2, 7)))
    assert maps.shape == (2, 2, 2, 7, 7)  # (layers, batch, heads, seq, seq)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 2, 7))
    assert torch.all(maps.triu(diagonal=1) == 0)
    assert not any(block.self_attn.record_weights for block in model.blocks)  # switched back off


def test_bad_inputs_and_configs(model: TinyGPT) -> None:
    with pytest.raises(ValueError, match="exceeds the model's block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype long"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="not divisible by n_head"):
        GPTConfig(vocab_size=11, d_model=30, n_head=4)
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        GPTConfig(vocab_size=0)


def test_attention_maps_leave_out_dropout_and_keep_the_mode() -> None:
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16, dropout=0.5))
    model.train()
    maps = model.attention_maps(torch.randint(11, (2, 8)))
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 2, 8))  # dropout would break the rows' sums
    assert model.training


# ----------------------------------------------------------------------------- position schemes

def _model(position: str, block_size: int = 16) -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=11, block_size=block_size, n_layer=2, n_head=4, d_model=32,
                             position=position)).eval()


def _naive_logits(model: TinyGPT, idx: torch.Tensor) -> torch.Tensor:
    for block in model.blocks:
        block.self_attn.record_weights = True
    try:
        return model(idx)
    finally:
        for block in model.blocks:
            block.self_attn.record_weights = False


@pytest.mark.parametrize("position", POSITIONS)
def test_fused_and_naive_paths_agree_for_every_position_scheme(position: str) -> None:
    model = _model(position)
    lengths = (16,) if position == "learned" else (16, 64)  # 64: four times the training context
    for seq in lengths:
        idx = torch.randint(0, 11, (2, seq), generator=torch.Generator().manual_seed(seq))
        with torch.no_grad():
            fused, naive = model(idx), _naive_logits(model, idx)
        assert (fused - naive).abs().max() <= 1e-5
        maps = model.attention_maps(idx)  # (layers, batch, heads, seq, seq)
        assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 4, seq), atol=1e-5)
        assert torch.all(maps.triu(diagonal=1) == 0)


def test_only_the_schemes_that_add_a_vector_have_a_position_module() -> None:
    kinds = {p: type(_model(p).pos_emb) for p in POSITIONS}
    assert kinds == {"none": nn.Identity, "sinusoidal": SinusoidalPositionalEncoding,
                     "learned": LearnedPositionalEmbedding, "rope": nn.Identity, "alibi": nn.Identity}
    rope = _model("rope")
    assert all(block.self_attn.rotary is rope.rotary for block in rope.blocks)  # one table, shared
    assert all(block.self_attn.alibi for block in _model("alibi").blocks)
    assert not any(block.self_attn.alibi or block.self_attn.rotary for block in _model("learned").blocks)
    # only the learned table has parameters: the others have the same count
    counts = {p: count_parameters(_model(p)) for p in POSITIONS}
    assert counts["learned"] - counts["none"] == 16 * 32
    assert counts["none"] == counts["sinusoidal"] == counts["rope"] == counts["alibi"]


def test_sinusoidal_adds_the_scaled_table() -> None:
    model = _model("sinusoidal")
    x = torch.randn(1, 10, 32)
    expected = x + SINUSOIDAL_SCALE * sinusoidal_table(10, 32)
    assert torch.allclose(model.pos_emb(x), expected, atol=1e-6)
    assert abs(float((SINUSOIDAL_SCALE * sinusoidal_table(512, 32)).pow(2).mean().sqrt()) - 0.02) < 1e-4


def test_rope_scores_depend_only_on_the_offset() -> None:
    attn = _model("rope").blocks[0].self_attn
    x = torch.randn(1, 24, 32)
    shift = 8
    with torch.no_grad():
        q_long, k_long, _ = attn.queries_keys_values(x)  # the tokens at positions 0..23
        q_short, k_short, _ = attn.queries_keys_values(x[:, shift:])  # the last 16 again, now at positions 0..15
    scores_long = q_long[..., shift:, :] @ k_long[..., shift:, :].transpose(-2, -1)
    scores_short = q_short @ k_short.transpose(-2, -1)
    assert not torch.allclose(q_long[..., shift:, :], q_short, atol=1e-3)  # the rotations differ by 8 positions...
    assert torch.allclose(scores_long, scores_short, atol=1e-5)  # ...but every score is the same


def test_alibi_adds_exactly_alibi_bias_to_the_scores() -> None:
    attn = _model("alibi").blocks[0].self_attn
    x = torch.randn(2, 10, 32)
    attn.record_weights = True
    with torch.no_grad():
        attn(x, is_causal=True)
        q, k, _ = attn.queries_keys_values(x)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8) + alibi_bias(4, 10)
    scores = scores.masked_fill(~torch.ones(10, 10, dtype=torch.bool).tril(), float("-inf"))
    assert torch.allclose(attn.last_weights, scores.softmax(-1), atol=1e-6)
    # With no content in q and k (zero projections), the weights are the bias alone.
    with torch.no_grad():
        attn.q_proj.weight.zero_()
        attn(x)
    assert torch.allclose(attn.last_weights, alibi_bias(4, 10).softmax(-1).expand(2, -1, -1, -1), atol=1e-6)


def _no_mask_logits(model: TinyGPT, idx: torch.Tensor) -> torch.Tensor:
    """The model's forward pass with the causal mask left out."""
    x = model.pos_emb(model.token_emb(idx))
    for block in model.blocks:
        x = block(x, is_causal=False)
    return model.lm_head(model.norm(x))


@pytest.mark.parametrize("position", POSITIONS)
def test_without_positions_and_mask_the_model_is_permutation_equivariant(position: str) -> None:
    model = _model(position)
    idx = torch.randint(0, 11, (1, 12), generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, out_permuted = _no_mask_logits(model, idx), _no_mask_logits(model, idx[:, perm])
    equivariant = torch.allclose(out_permuted, out[:, perm], atol=1e-5)
    assert equivariant == (position == "none")  # every scheme but none breaks the symmetry


def test_learned_refuses_past_block_size_and_the_others_run_at_four_times_it() -> None:
    long = torch.randint(0, 11, (1, 64))
    with pytest.raises(ValueError, match=r"exceeds the model's block_size=16; crop .* GPTConfig.position 'none', "
                                         r"'sinusoidal', 'rope', 'alibi' run on longer sequences"):
        _model("learned")(long)
    for position in ("none", "sinusoidal", "rope", "alibi"):
        model = _model(position)
        assert model(long).shape == (1, 64, 11)
        # causal: the first 16 positions of a long window are what a window of 16 gives
        assert torch.allclose(model(long)[:, :16], model(long[:, :16]), atol=1e-5)


def test_the_formula_tables_stop_at_their_length() -> None:
    model = _model("rope", block_size=4)
    assert model.max_len == FORMULA_LENGTH_FACTOR * 4
    model(torch.zeros(1, model.max_len, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"sequence length {model.max_len + 1} exceeds the 'rope' model's "
                                         rf"max_len={model.max_len}"):
        model(torch.zeros(1, model.max_len + 1, dtype=torch.long))
    assert _model("alibi").max_len is None and _model("none").max_len is None


def test_bad_position_configs() -> None:
    with pytest.raises(ValueError, match=r"GPTConfig.position must be one of 'none', 'sinusoidal', 'learned', "
                                         r"'rope', 'alibi', got 'rotary'"):
        GPTConfig(vocab_size=11, position="rotary")
    with pytest.raises(ValueError, match=r"position='rope' rotates dims in pairs, so d_head .* got 12 / 4 = 3"):
        GPTConfig(vocab_size=11, d_model=12, n_head=4, position="rope")
    with pytest.raises(ValueError, match=r"position='sinusoidal' pairs sin/cos dims, so d_model must be even, got 15"):
        GPTConfig(vocab_size=11, d_model=15, n_head=3, position="sinusoidal")
    GPTConfig(vocab_size=11, d_model=15, n_head=3, position="alibi")  # ALiBi takes any head count


OLD_CONFIG = {"vocab_size": 11, "block_size": 16, "n_layer": 2, "n_head": 2, "d_model": 32, "dropout": 0.0,
              "bias": False}  # a TinyGPT config as checkpoints saved it before `position` existed


def test_a_config_saved_before_position_existed_loads_as_learned(tmp_path) -> None:
    assert GPTConfig(**OLD_CONFIG) == GPTConfig(**OLD_CONFIG, position="learned")
    model = TinyGPT(GPTConfig(**OLD_CONFIG))
    path = save_checkpoint(tmp_path / "old.safetensors", model, model_config=OLD_CONFIG,
                           tokenizer=CharTokenizer("abcdefghijk").to_dict())
    loaded, _ = load_trained(path)
    assert loaded.config.position == "learned"
    idx = torch.randint(0, 11, (2, 16))
    assert torch.equal(loaded(idx), model.eval()(idx))


def test_a_run_saved_before_position_existed_resumes(tmp_path) -> None:
    corpus = CharCorpus.from_text("to be or not to be, that is the question " * 20)
    config = TrainConfig(steps=4, batch_size=4, eval_every=2, eval_batches=1, warmup_steps=1)
    shape = dict(OLD_CONFIG, vocab_size=corpus.tokenizer.vocab_size)
    path = tmp_path / "run.safetensors"
    train(TinyGPT(GPTConfig(**shape)), corpus, replace(config, steps=2), checkpoint=path, progress=False)
    tensors = load_file(str(path))  # rewrite the metadata as an older labkit wrote it: no `position`
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    meta = json.loads(metadata["meta"])
    del meta["model_config"]["position"]
    save_file(tensors, str(path), metadata={**metadata, "meta": json.dumps(meta)})
    history = train(TinyGPT(GPTConfig(**shape)), corpus, config, checkpoint=path, resume=True, progress=False)
    assert history.step == 4 and history.eval_steps == [2, 4]


def test_tie_head_false_gives_the_output_layer_its_own_matrix() -> None:
    tied = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8))
    untied = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8, tie_head=False))
    assert tied.lm_head.weight is tied.token_emb.weight
    assert untied.lm_head.weight is not untied.token_emb.weight
    assert count_parameters(untied) == count_parameters(tied) + 11 * 8
    assert GPTConfig(**{**untied.config.to_dict()}) == untied.config  # a checkpoint's config restores it
    with pytest.raises(ValueError, match="GPTConfig.tie_head must be True or False, got 'no'"):
        GPTConfig(vocab_size=11, tie_head="no")


def test_attention_only_blocks_have_no_feed_forward_and_only_heads_write() -> None:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=8, attention_only=True))
    assert all(block.ff is None and block.norm2 is None for block in model.blocks)
    full = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=8))
    assert count_parameters(full) - count_parameters(model) == 2 * count_parameters(full.blocks[0].ff) + 2 * 8
    idx = torch.randint(0, 11, (2, 8))
    with torch.no_grad():
        x = model.pos_emb(model.token_emb(idx))
        for block in model.blocks:  # the stream is the embedding plus what each attention layer writes
            x = x + block.self_attn(block.norm1(x), is_causal=True)
        torch.testing.assert_close(model.eval()(idx), model.lm_head(model.norm(x)), atol=1e-6, rtol=0)
    assert GPTConfig(**model.config.to_dict()) == model.config  # a checkpoint's config restores it
    saved_before = {k: v for k, v in full.config.to_dict().items() if k != "attention_only"}
    assert GPTConfig(**saved_before) == full.config  # configs saved before the switch existed load as before
    with pytest.raises(ValueError, match="GPTConfig.attention_only must be True or False, got 1"):
        GPTConfig(vocab_size=11, attention_only=1)
