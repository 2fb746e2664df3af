"""TinyBERT and its heads: shapes, the tied MLM decoder, padding, segments, configuration errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkit.blocks import count_parameters
from labkit.models import BertConfig, MaskedLMHead, NSPHead, TinyBERT

CONFIG = BertConfig(vocab_size=50, max_len=16, n_layer=2, n_head=2, d_model=32)


@pytest.fixture
def model() -> TinyBERT:
    torch.manual_seed(0)
    return TinyBERT(CONFIG).eval()


def test_shapes_of_the_encoder_and_both_heads(model: TinyBERT) -> None:
    ids = torch.randint(5, 50, (3, 12))
    hidden = model(ids, torch.zeros_like(ids), torch.ones_like(ids, dtype=torch.bool))
    assert hidden.shape == (3, 12, 32)
    assert model.mlm_head(hidden[:, 4]).shape == (3, 50)  # (n, d_model) → (n, vocab)
    assert model.nsp_head(hidden).shape == (3, 2)
    assert torch.equal(model(ids), hidden)  # no segments / no mask = all sentence A, nothing padded
    assert CONFIG.d_ff == 4 * CONFIG.d_model
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_bert_is_post_ln_with_gelu_and_bert_init(model: TinyBERT) -> None:
    assert all(not block.norm_first and block.ff.activation == "gelu" for block in model.blocks)
    assert isinstance(model.norm, torch.nn.Identity)  # post-LN blocks end in a LayerNorm already
    assert model.token_emb.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(model.blocks[0].ff.linear1.bias == 0)
    pre = TinyBERT(BertConfig(vocab_size=50, max_len=16, n_layer=1, n_head=2, d_model=32, norm_first=True))
    assert pre.blocks[0].norm_first and isinstance(pre.norm, torch.nn.LayerNorm)


def test_mlm_decoder_is_the_word_embedding(model: TinyBERT) -> None:
    decoder = model.mlm_head.decoder
    assert decoder.weight is model.token_emb.weight
    assert decoder.weight.data_ptr() == model.token_emb.weight.data_ptr()
    assert decoder.bias.shape == (50,) and decoder.bias is not model.token_emb.weight
    # A step on the MLM loss moves embedding rows of tokens that never appear in the input: only the tied decoder
    # (which scores every token of the vocabulary) reaches them.
    model.train()
    ids = torch.randint(5, 20, (4, 10))
    before = model.token_emb.weight.detach().clone()
    hidden = model(ids)
    loss = F.cross_entropy(model.mlm_head(hidden[:, 3]), ids[:, 3])
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.allclose(model.token_emb.weight[30:], before[30:])
    assert torch.equal(model.mlm_head.decoder.weight, model.token_emb.weight)


def test_padding_is_hidden_from_the_real_tokens(model: TinyBERT) -> None:
    ids = torch.randint(5, 50, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False  # row 0: 6 real tokens, 4 pads
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 7) % 50  # other tokens where row 0 is padded
    a, b = model(ids, attention_mask=mask), model(changed, attention_mask=mask)
    assert torch.allclose(a[0, :6], b[0, :6], atol=1e-5)
    assert torch.allclose(a[1], b[1])  # the other row is untouched
    unmasked_a, unmasked_b = model(ids), model(changed)  # without the mask the change does leak in
    assert not torch.allclose(unmasked_a[0, :6], unmasked_b[0, :6], atol=1e-3)
    assert torch.allclose(model(ids, attention_mask=mask.long()), a)  # 0/1 masks work too


def test_segment_embeddings_change_the_hidden_states(model: TinyBERT) -> None:
    ids = torch.randint(5, 50, (1, 10))
    segments = torch.zeros_like(ids)
    segments[0, 5:] = 1
    assert torch.allclose(model(ids, torch.zeros_like(ids)), model(ids))
    assert not torch.allclose(model(ids, segments), model(ids), atol=1e-3)
    assert model.segment_emb.weight.shape == (2, 32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(vocab_size=0), "vocab_size must be a positive int"),
    (dict(vocab_size=50, d_model=30, n_head=4), "d_model=30 is not divisible by n_head=4"),
    (dict(vocab_size=50, dropout=1.0), r"dropout must lie in \[0, 1\)"),
    (dict(vocab_size=50, type_vocab_size=0), "type_vocab_size must be a positive int"),
    (dict(vocab_size=50, d_ff=0), "d_ff must be a positive int"),
    (dict(vocab_size=50, max_len=2.5), "max_len must be a positive int"),
])
def test_bad_configs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BertConfig(**kwargs)


def test_bad_inputs_are_refused(model: TinyBERT) -> None:
    with pytest.raises(ValueError, match="exceeds the model's max_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, seq\) integer ids"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        model(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.zeros(1, 5, dtype=torch.long), attention_mask=torch.ones(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"nn.Embedding of shape \(vocab_size=50, d_model=16\)"):
        MaskedLMHead(16, 50, model.token_emb)
    with pytest.raises(ValueError, match="hidden must have shape"):
        NSPHead(32)(torch.zeros(2, 32))


def test_mlm_head_leaves_a_foreign_embedding_as_it_was() -> None:
    embedding = torch.nn.Embedding(40, 8)
    before = embedding.weight.detach().clone()
    head = MaskedLMHead(8, 40, embedding)
    assert torch.equal(embedding.weight, before) and head.decoder.weight is embedding.weight
    assert torch.all(head.decoder.bias == 0)
    assert head(torch.randn(3, 8)).shape == (3, 40)
    assert head(torch.randn(0, 8)).shape == (0, 40)  # a batch with nothing masked
