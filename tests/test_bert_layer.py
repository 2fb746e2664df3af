"""EncoderBlock.from_bert_layer: the packaged pretrained encoder's layers copied into labkit blocks reproduce its
hidden states (one layer, the six-layer stack, with padding), and anything but a BERT encoder layer is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

from labkit.blocks import EncoderBlock

SENTENCES = ["The cat sat on the warm mat because the sun was out.", "Attention is all you need."]
ATOL = 1e-4


@pytest.fixture(scope="module")
def encoder(packaged_models_only):
    """(tokenizer, BertModel in eval mode): the packaged all-MiniLM-L6-v2, loaded offline."""
    from labkit.assets import PACKAGED_ENCODER, load_encoder

    return load_encoder(PACKAGED_ENCODER)


@pytest.fixture(scope="module")
def run(encoder):
    """(HF attention_mask (batch, seq), labkit mask (batch, 1, 1, seq), the model's outputs with hidden states)
    for two sentences of different lengths, so the second is padded."""
    tokenizer, model = encoder
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert not batch["attention_mask"].bool().all(), "the batch should contain padding"
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return batch["attention_mask"], batch["attention_mask"].bool()[:, None, None, :], out


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_the_copy_is_a_post_ln_gelu_block_with_berts_eps(encoder) -> None:
    layer = encoder[1].encoder.layer[0]
    block = EncoderBlock.from_bert_layer(layer)
    assert not block.norm_first and block.ff.activation == "gelu"
    assert block.norm1.eps == block.norm2.eps == 1e-12
    assert block.training == layer.training  # eval, as load_encoder returns it
    assert block.self_attn.dropout == layer.attention.self.dropout.p  # on the attention probabilities
    assert block.dropout1.p == block.ff.dropout_out.p == layer.output.dropout.p  # before each residual add
    assert block.ff.dropout.p == 0.0  # BERT has none between the feed-forward's two linears
    ours = dict(block.named_parameters())
    assert torch.equal(ours["self_attn.q_proj.weight"], layer.attention.self.query.weight)
    assert torch.equal(ours["norm2.bias"], layer.output.LayerNorm.bias)
    assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("index", range(6))
def test_one_layer_reproduces_its_hidden_states(encoder, run, index: int) -> None:
    _, keep, out = run
    block = EncoderBlock.from_bert_layer(encoder[1].encoder.layer[index])
    with torch.no_grad():
        assert _max_diff(block(out.hidden_states[index], keep), out.hidden_states[index + 1]) <= ATOL
        # the first sentence alone has no padding: no mask at all
        alone = block(out.hidden_states[index][:1, : int(keep[0].sum())])
    assert _max_diff(alone, out.hidden_states[index + 1][:1, : alone.shape[1]]) <= ATOL


def test_the_six_layer_stack_reproduces_last_hidden_state(encoder, run) -> None:
    _, keep, out = run
    blocks = [EncoderBlock.from_bert_layer(layer) for layer in encoder[1].encoder.layer]
    assert len(blocks) == 6
    h = out.hidden_states[0]  # the embeddings' output: word + position + segment, LayerNorm
    with torch.no_grad():
        for block in blocks:
            h = block(h, keep)
    real = keep[:, 0, 0]  # (batch, seq): the real tokens
    assert _max_diff(h, out.last_hidden_state) <= ATOL
    assert _max_diff(h[real], out.last_hidden_state[real]) <= ATOL


def test_labkit_mask_matches_hugging_faces_extended_mask(encoder, run) -> None:
    """True = may attend ⇔ 0 in BERT's additive extended mask (1 - attention_mask) · min."""
    attention_mask, keep, out = run
    layer = encoder[1].encoder.layer[0]
    extended = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    assert torch.equal(extended == 0, keep)
    with torch.no_grad():
        theirs = layer(out.hidden_states[0], extended)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        ours = EncoderBlock.from_bert_layer(layer)(out.hidden_states[0], keep)
    assert _max_diff(ours, theirs) <= ATOL


def _tiny_layer(**config) -> BertLayer:
    torch.manual_seed(0)
    return BertLayer(BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64, **config)).eval()


def test_a_random_bert_layer_in_training_mode_keeps_its_mode() -> None:
    layer = _tiny_layer().train()
    block = EncoderBlock.from_bert_layer(layer)
    assert block.training
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        assert _max_diff(block.eval()(x), layer.eval()(x)) <= 1e-5


def test_not_a_bert_layer_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"layer \(a Linear\) is not a BERT encoder layer: .*attention\.self\.query.*"
                                        r"missing or of another type: all of them$"):
        EncoderBlock.from_bert_layer(nn.Linear(4, 4))
    layer = _tiny_layer()
    layer.output.LayerNorm = nn.Identity()
    with pytest.raises(TypeError, match=r"missing or of another type: output\.LayerNorm$"):
        EncoderBlock.from_bert_layer(layer)


@pytest.mark.parametrize("hidden_act", ["gelu_new", "gelu_pytorch_tanh", "relu"])
def test_another_activation_is_refused(hidden_act: str) -> None:
    with pytest.raises(ValueError, match=r"has the activation .*expected BERT's exact GELU"):
        EncoderBlock.from_bert_layer(_tiny_layer(hidden_act=hidden_act))


def test_a_decoder_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="is a BERT decoder layer"):
        EncoderBlock.from_bert_layer(_tiny_layer(is_decoder=True))


def test_mismatched_parts_are_refused() -> None:
    layer = _tiny_layer()
    layer.output.LayerNorm.eps = 1e-5
    with pytest.raises(ValueError, match=r"two LayerNorms have different eps \[1e-12, 1e-05\]"):
        EncoderBlock.from_bert_layer(layer)
    layer = _tiny_layer()
    layer.attention.output.dense = nn.Linear(32, 32, bias=False)
    with pytest.raises(ValueError, match=r"no bias in attention\.output\.dense"):
        EncoderBlock.from_bert_layer(layer)
    layer = _tiny_layer()
    layer.output.dense = nn.Linear(48, 32)
    with pytest.raises(ValueError, match=r"unexpected shapes: output\.dense \(32, 48\)"):
        EncoderBlock.from_bert_layer(layer)
