"""Your models in the Hugging Face ecosystem: labkit's TinyGPT and TinyBERT as `transformers` models, saved in
folders that `AutoModelFor*.from_pretrained`, `AutoTokenizer.from_pretrained` and `pipeline(...)` load like any
checkpoint, offline.

* `to_gpt2`: a TinyGPT whose architecture GPT-2 has (learned, sinusoidal or no positions; no QK-norm; a feed-forward
  in every block) → `GPT2LMHeadModel` with the same logits. GPT-2 keeps q, k and v in one fused `c_attn` and stores
  its linear layers as `Conv1D`, whose weight is (in, out): the transpose of `nn.Linear`'s (out, in).
* `gpt_to_hf`: the first stock architecture that computes the TinyGPT exactly (GPT-2, MPT for ALiBi, Persimmon for
  RoPE), else `LabkitGPTForCausalLM`, a thin Hugging Face wrapper around the TinyGPT itself.
* `bert_to_hf`: a post-LN TinyBERT → `BertForPreTraining` (both heads); a pre-LN one → `RobertaPreLayerNormForMaskedLM`.
* `char_tokenizer_to_hf`: a `CharTokenizer` → a fast tokenizer built with the `tokenizers` library.
* `export_gpt`, `export_bert`, `export_finetuned`: convert, check and `save_pretrained` into a folder;
  `check_export` says what a folder holds ("causal-lm", "masked-lm", ...) or what it lacks.

Every converted model is returned in eval mode; its outputs equal the labkit model's within float rounding (1e-5).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from torch import Tensor, nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, BertConfig as HFBertConfig,
                          BertForPreTraining, GenerationMixin, GPT2Config, GPT2LMHeadModel, MptConfig, MptForCausalLM,
                          PersimmonConfig, PersimmonForCausalLM, PretrainedConfig, PreTrainedModel,
                          PreTrainedTokenizerBase, PreTrainedTokenizerFast, RobertaPreLayerNormConfig,
                          RobertaPreLayerNormForMaskedLM)
from transformers import initialization as hf_init
from transformers.modeling_outputs import CausalLMOutput

from labkit.assets import WEIGHT_FILES, check_tokenizer
from labkit.blocks import BERT_LAYER_PARTS
from labkit.corpus import CharTokenizer
from labkit.models import FORMULA_LENGTH_FACTOR, GPTConfig, TinyBERT, TinyGPT
from labkit.positional import RotaryEmbedding, SinusoidalPositionalEncoding, rope_angles, sinusoidal_table

__all__ = ["GPT2_POSITIONS", "KINDS", "LabkitGPTConfig", "LabkitGPTForCausalLM", "to_gpt2", "gpt_to_hf",
           "bert_to_hf", "char_tokenizer_to_hf", "export_gpt", "export_bert", "export_finetuned", "check_export"]

# The TinyGPT positions GPT-2's one table of position vectors, added to the tokens, can hold exactly.
GPT2_POSITIONS = ("learned", "sinusoidal", "none")
# What `check_export` answers, by the ending of the saved architecture's class name.
KINDS = {"ForCausalLM": "causal-lm", "LMHeadModel": "causal-lm", "ForMaskedLM": "masked-lm",
         "ForPreTraining": "masked-lm", "ForSequenceClassification": "sequence-classification",
         "ForTokenClassification": "token-classification"}
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def _require_model(model: object, kind: type, other: str) -> None:
    if not isinstance(model, kind):
        raise TypeError(f"model must be a labkit {kind.__name__}, got {type(model).__name__} ({other})")


def _load_weights(hf_model: PreTrainedModel, weights: dict[str, Tensor]) -> PreTrainedModel:
    """Copy `weights` (parameter name → tensor) into `hf_model`, which must name each of its parameters exactly
    once (tied ones under their first name); returns it in eval mode."""
    params = dict(hf_model.named_parameters())
    if set(params) != set(weights):
        raise RuntimeError(f"labkit.export's mapping is out of step with {type(hf_model).__name__}: no value for "
                           f"{sorted(set(params) - set(weights))}, no parameter for "
                           f"{sorted(set(weights) - set(params))}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return hf_model.eval()


def _bias(module: nn.Module, size: int) -> Tensor:
    """module's bias, or zeros (size,) for a layer built with bias=False: the same function with a zero bias."""
    return module.bias if module.bias is not None else torch.zeros(size)


# ---------------------------------------------------------------------------------------------- tokenizer


def char_tokenizer_to_hf(tokenizer: CharTokenizer) -> PreTrainedTokenizerFast:
    """The CharTokenizer as a Hugging Face fast tokenizer: the same id for every character of its alphabet, newline
    and space included; decode joins the characters with nothing between them, so decode(encode(text)) == text.

    Built with the `tokenizers` library: a pre-tokenizer that splits the text into single characters, a word-level
    model with the alphabet as vocabulary, and a decoder that fuses the pieces. No special tokens are added (the
    model has no rows for them). A character outside the alphabet is refused, as `CharTokenizer.encode` refuses it:
    encoding raises tokenizers' `Exception("WordLevel error: Missing [UNK] token from the vocabulary")`, since the
    model has no id for it. `clean_up_tokenization_spaces=False` keeps " ." and " ," as they were written.
    """
    if not isinstance(tokenizer, CharTokenizer):
        raise TypeError(f"tokenizer must be a labkit CharTokenizer, got {type(tokenizer).__name__}")
    backend = Tokenizer(models.WordLevel({char: i for i, char in enumerate(tokenizer.chars)}, unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False)


# ---------------------------------------------------------------------------------------------- stock causal LMs


def _shared_obstacles(config: GPTConfig, name: str) -> list[str]:
    """What no stock causal LM computes: labkit's QK-norm (an RMS norm without weights over each head's queries and
    keys) and blocks without a feed-forward."""
    obstacles = [f"qk_norm=True ({name} has no RMS QK-norm)"] if config.qk_norm else []
    if config.attention_only:
        obstacles.append(f"attention_only=True (every {name} block has a feed-forward)")
    return obstacles


def _gpt2_obstacles(config: GPTConfig) -> list[str]:
    """What in `config` GPT-2 cannot compute; empty when a GPT2LMHeadModel holds the model exactly."""
    obstacles = [] if config.position in GPT2_POSITIONS else [
        f"position={config.position!r} (GPT-2 adds one table of position vectors to the tokens, which holds "
        f"position {', '.join(map(repr, GPT2_POSITIONS))})"]
    return obstacles + _shared_obstacles(config, "GPT-2")


def _mpt_obstacles(config: GPTConfig) -> list[str]:
    """MPT: ALiBi (its slopes are labkit's for any head count), exact GELU, no biases."""
    obstacles = [] if config.position == "alibi" else [f"position={config.position!r} (MPT's is 'alibi')"]
    if config.activation != "gelu":
        obstacles.append(f"activation={config.activation!r} (MPT's is 'gelu')")
    if config.bias:
        obstacles.append("bias=True (MPT has no biases)")
    return obstacles + _shared_obstacles(config, "MPT")


def _persimmon_obstacles(config: GPTConfig) -> list[str]:
    """Persimmon: RoPE, LayerNorm blocks, any activation (its QK-norm is a LayerNorm: off)."""
    obstacles = [] if config.position == "rope" else [f"position={config.position!r} (Persimmon's is 'rope')"]
    return obstacles + _shared_obstacles(config, "Persimmon")


def _position_table(model: TinyGPT) -> Tensor:
    """(block_size, d_model): what TinyGPT adds to the tokens at positions 0..block_size-1, as a GPT-2 `wpe`."""
    c = model.config
    if c.position == "learned":
        return model.pos_emb.table.weight
    if c.position == "sinusoidal":
        return model.pos_emb.pe[: c.block_size]  # the fixed table, scaled: added exactly like a learned one
    return torch.zeros(c.block_size, c.d_model)


def _head(model: TinyGPT, name: str) -> dict[str, Tensor]:
    """The output layer's weight under `name`, when it has its own (tie_head=False); tied, the embedding serves."""
    return {} if model.config.tie_head else {name: model.lm_head.weight}


def to_gpt2(model: TinyGPT) -> GPT2LMHeadModel:
    """A `GPT2LMHeadModel` computing the same logits (batch, seq, vocab) as `model`, for sequences up to block_size.

    The architecture must be GPT-2's: positions in `GPT2_POSITIONS` (a sinusoidal or absent table becomes GPT-2's
    `wpe`, fixed rows or zeros; n_positions = block_size either way), no QK-norm, a feed-forward in every block.
    labkit's activation names are transformers' (ACT2FN): "gelu" is the exact erf GELU in both, not GPT-2's usual
    tanh "gelu_new"; "relu2" is ReLU². bias=False becomes zero biases; the head stays tied or untied; dropout as the
    model's. ValueError naming what GPT-2 lacks otherwise (`gpt_to_hf` exports every TinyGPT).
    """
    _require_model(model, TinyGPT, "a TinyBERT goes to bert_to_hf")
    c = model.config
    obstacles = _gpt2_obstacles(c)
    if obstacles:
        raise ValueError(f"GPT-2 cannot hold this TinyGPT exactly: {'; '.join(obstacles)}. Use gpt_to_hf(model), "
                         f"which exports any TinyGPT")
    d = c.d_model
    config = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=d, n_layer=c.n_layer,
                        n_head=c.n_head, n_inner=4 * d, activation_function=c.activation,
                        resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                        layer_norm_epsilon=model.norm.eps, tie_word_embeddings=c.tie_head,
                        bos_token_id=None, eos_token_id=None)
    weights = {"transformer.wte.weight": model.token_emb.weight, "transformer.wpe.weight": _position_table(model),
               "transformer.ln_f.weight": model.norm.weight, "transformer.ln_f.bias": _bias(model.norm, d),
               **_head(model, "lm_head.weight")}
    for i, block in enumerate(model.blocks):
        attn, ff, h = block.self_attn, block.ff, f"transformer.h.{i}."
        qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
        weights.update({
            h + "ln_1.weight": block.norm1.weight, h + "ln_1.bias": _bias(block.norm1, d),
            # Conv1D: weight (in, out), so the transposes; c_attn holds q, k, v side by side on the out axis.
            h + "attn.c_attn.weight": torch.cat([p.weight for p in qkv]).T,
            h + "attn.c_attn.bias": torch.cat([_bias(p, d) for p in qkv]),
            h + "attn.c_proj.weight": attn.out_proj.weight.T, h + "attn.c_proj.bias": _bias(attn.out_proj, d),
            h + "ln_2.weight": block.norm2.weight, h + "ln_2.bias": _bias(block.norm2, d),
            h + "mlp.c_fc.weight": ff.linear1.weight.T, h + "mlp.c_fc.bias": _bias(ff.linear1, 4 * d),
            h + "mlp.c_proj.weight": ff.linear2.weight.T, h + "mlp.c_proj.bias": _bias(ff.linear2, d),
        })
    return _load_weights(GPT2LMHeadModel(config), weights)


def _to_mpt(model: TinyGPT) -> MptForCausalLM:
    """An ALiBi TinyGPT with GELU and no biases as `MptForCausalLM`, for sequences up to 16 × block_size (MPT builds
    its ALiBi table up to max_seq_len; the TinyGPT has no limit). MPT's bias -slope·(last - j) differs from
    -slope·|i - j| by a constant along each causal row, which the softmax does not see."""
    c = model.config
    config = MptConfig(d_model=c.d_model, n_heads=c.n_head, n_layers=c.n_layer, expansion_ratio=4,
                       max_seq_len=FORMULA_LENGTH_FACTOR * c.block_size, vocab_size=c.vocab_size,
                       resid_pdrop=c.dropout, emb_pdrop=c.dropout, layer_norm_epsilon=model.norm.eps, no_bias=True,
                       tie_word_embeddings=c.tie_head, attn_config={"alibi": True})  # its attn_pdrop takes ints only
    weights = {"transformer.wte.weight": model.token_emb.weight, "transformer.norm_f.weight": model.norm.weight,
               **_head(model, "lm_head.weight")}
    for i, block in enumerate(model.blocks):
        attn, h = block.self_attn, f"transformer.blocks.{i}."
        weights.update({
            h + "norm_1.weight": block.norm1.weight, h + "norm_2.weight": block.norm2.weight,
            h + "attn.Wqkv.weight": torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
            h + "attn.out_proj.weight": attn.out_proj.weight,
            h + "ffn.up_proj.weight": block.ff.linear1.weight, h + "ffn.down_proj.weight": block.ff.linear2.weight,
        })
    return _load_weights(MptForCausalLM(config), weights)


def _to_persimmon(model: TinyGPT) -> PersimmonForCausalLM:
    """A RoPE TinyGPT without QK-norm as `PersimmonForCausalLM` (up to max_len = 16 × block_size, as the TinyGPT).

    labkit turns dims (2i, 2i+1) of each head together, Hugging Face's `rotate_half` dims (i, i + d_head/2), at the
    same frequencies: reordering the rows of every head's query and key projections (evens first, then odds) turns
    one into the other, and q·k does not change. Persimmon fuses q, k, v head by head: rows (head, 3, d_head)."""
    c, d = model.config, model.config.d_model
    d_head = d // c.n_head
    order = torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])  # interleaved → rotate_half

    def rows(proj: nn.Linear, rotate: bool) -> tuple[Tensor, Tensor]:
        """proj's weight (heads, d_head, d) and bias (heads, d_head), rows reordered when RoPE turns them."""
        weight, bias = proj.weight.view(c.n_head, d_head, d), _bias(proj, d).view(c.n_head, d_head)
        return (weight[:, order], bias[:, order]) if rotate else (weight, bias)

    config = PersimmonConfig(vocab_size=c.vocab_size, hidden_size=d, intermediate_size=4 * d,
                             num_hidden_layers=c.n_layer, num_attention_heads=c.n_head,
                             hidden_act=c.activation, max_position_embeddings=model.max_len,
                             layer_norm_eps=model.norm.eps, tie_word_embeddings=c.tie_head, qk_layernorm=False,
                             hidden_dropout=c.dropout, attention_dropout=c.dropout, bos_token_id=None,
                             eos_token_id=None, rope_parameters={"rope_type": "default", "partial_rotary_factor": 1.0,
                                                                 "rope_theta": model.rotary.base})
    weights = {"model.embed_tokens.weight": model.token_emb.weight, "model.final_layernorm.weight": model.norm.weight,
               "model.final_layernorm.bias": _bias(model.norm, d), **_head(model, "lm_head.weight")}
    for i, block in enumerate(model.blocks):
        attn, ff, h = block.self_attn, block.ff, f"model.layers.{i}."
        (qw, qb), (kw, kb), (vw, vb) = rows(attn.q_proj, True), rows(attn.k_proj, True), rows(attn.v_proj, False)
        weights.update({
            h + "input_layernorm.weight": block.norm1.weight, h + "input_layernorm.bias": _bias(block.norm1, d),
            h + "self_attn.query_key_value.weight": torch.stack([qw, kw, vw], 1).reshape(3 * d, d),
            h + "self_attn.query_key_value.bias": torch.stack([qb, kb, vb], 1).reshape(3 * d),
            h + "self_attn.dense.weight": attn.out_proj.weight, h + "self_attn.dense.bias": _bias(attn.out_proj, d),
            h + "post_attention_layernorm.weight": block.norm2.weight,
            h + "post_attention_layernorm.bias": _bias(block.norm2, d),
            h + "mlp.dense_h_to_4h.weight": ff.linear1.weight, h + "mlp.dense_h_to_4h.bias": _bias(ff.linear1, 4 * d),
            h + "mlp.dense_4h_to_h.weight": ff.linear2.weight, h + "mlp.dense_4h_to_h.bias": _bias(ff.linear2, d),
        })
    return _load_weights(PersimmonForCausalLM(config), weights)


# Each stock architecture a TinyGPT may fit, in the order `gpt_to_hf` tries them.
_STOCK = ((_gpt2_obstacles, to_gpt2), (_mpt_obstacles, _to_mpt), (_persimmon_obstacles, _to_persimmon))


# ---------------------------------------------------------------------------------------------- LabkitGPT


class LabkitGPTConfig(PretrainedConfig):
    """The GPTConfig of a TinyGPT, as a Hugging Face config (model_type "labkit-gpt"); `gpt_config()` gives it back.

    max_position_embeddings is the longest sequence the model runs on (TinyGPT.max_len: block_size for learned
    positions, 16 × block_size for sinusoidal and RoPE, None = no limit for none and ALiBi). Past block_size a model
    meets positions it never trained on; past max_position_embeddings it refuses (crop the context yourself).
    """

    model_type = "labkit-gpt"
    vocab_size: int = 1
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.0
    bias: bool = False
    position: str = "learned"
    tie_head: bool = True
    attention_only: bool = False
    activation: str = "gelu"
    qk_norm: bool = False
    zero_init_proj: bool = False
    max_position_embeddings: int | None = None
    tie_word_embeddings: bool = True
    use_cache: bool = False  # no key/value cache: generation reruns the whole context for every new token

    @classmethod
    def from_model(cls, model: TinyGPT) -> LabkitGPTConfig:
        c = model.config
        return cls(**c.to_dict(), max_position_embeddings=model.max_len, tie_word_embeddings=c.tie_head)

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(**{f.name: getattr(self, f.name) for f in fields(GPTConfig)})


class LabkitGPTForCausalLM(PreTrainedModel, GenerationMixin):
    """A TinyGPT (`self.gpt`) as a Hugging Face causal LM, for the TinyGPTs no stock architecture computes exactly.

    It exists because notebook 04's recipe (RoPE with QK-norm: each head's queries and keys RMS-normalised without
    weights, a LayerNorm before every sublayer, ReLU², an untied head, no biases) has no exact twin among
    transformers' architectures, nor have attention-only models and some ALiBi ones (see `gpt_to_hf`). The wrapper
    runs labkit's own forward, so the logits are the TinyGPT's. Registered with AutoConfig / AutoModelForCausalLM
    when labkit.export is imported: a process that loads such a folder (`from_pretrained`, `pipeline`) must
    `import labkit.export` first.

    forward(input_ids (batch, seq), attention_mask=None, labels=None) → CausalLMOutput(logits (batch, seq, vocab),
    loss when labels are given: next-token cross-entropy, labels shifted inside, -100 ignored). No padding (an
    attention_mask with zeros is refused) and no key/value cache: `generate` reruns the context for each new token.
    """

    config_class = LabkitGPTConfig
    base_model_prefix = "gpt"
    main_input_name = "input_ids"
    _tied_weights_keys = {"gpt.lm_head.weight": "gpt.token_emb.weight"}  # used only when config.tie_head

    def __init__(self, config: LabkitGPTConfig) -> None:
        super().__init__(config)
        with torch.device("cpu"):  # TinyGPT computes its RoPE / sinusoidal tables: not on from_pretrained's meta device
            self.gpt = TinyGPT(config.gpt_config())
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Recompute the fixed tables (not saved: they follow from their formula) after loading; weights as HF's."""
        super()._init_weights(module)
        if isinstance(module, SinusoidalPositionalEncoding):
            table = sinusoidal_table(module.max_len, module.d_model, module.base)
            hf_init.copy_(module.pe, module.scale * table)
        elif isinstance(module, RotaryEmbedding):
            cos, sin = rope_angles(module.max_len, module.d_head, module.base)
            hf_init.copy_(module.cos, cos)
            hf_init.copy_(module.sin, sin)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.gpt.token_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.gpt.token_emb = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.gpt.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.gpt.lm_head = value

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                **kwargs) -> CausalLMOutput:
        """kwargs: what the generation loop passes along (use_cache, ...), unused."""
        if attention_mask is not None and not attention_mask.bool().all():
            raise ValueError("attention_mask holds zeros (padding), but a TinyGPT has no padding mask: run one "
                             "unpadded sequence at a time")
        logits = self.gpt(input_ids)  # (batch, seq, vocab)
        loss = None if labels is None else self.loss_function(logits, labels, vocab_size=self.config.vocab_size)
        return CausalLMOutput(loss=loss, logits=logits)


AutoConfig.register(LabkitGPTConfig.model_type, LabkitGPTConfig, exist_ok=True)
AutoModelForCausalLM.register(LabkitGPTConfig, LabkitGPTForCausalLM, exist_ok=True)


def gpt_to_hf(model: TinyGPT) -> PreTrainedModel:
    """`model` as a Hugging Face causal LM with the same logits (batch, seq, vocab): the first stock architecture that
    computes it exactly, else a `LabkitGPTForCausalLM`, whose folder loads only after `import labkit.export`.

    * GPT-2 (`to_gpt2`): learned, sinusoidal or no positions;
    * MPT: ALiBi with GELU and no biases (labkit's defaults);
    * Persimmon: RoPE, any activation, biases or not;
    * LabkitGPTForCausalLM: QK-norm (notebook 04's recipe), attention-only blocks, ALiBi with ReLU, ReLU² or biases.
    No stock model has labkit's QK-norm in LayerNorm blocks (checked in transformers 5: Persimmon's QK-norm is a
    LayerNorm, which subtracts the mean; nanochat's blocks and the Llama family normalise with RMSNorm; StableLM and
    Qwen3 gate their feed-forward; Phi and Cohere run attention and feed-forward in parallel), nor blocks without a
    feed-forward.
    """
    _require_model(model, TinyGPT, "a TinyBERT goes to bert_to_hf")
    for obstacles, convert in _STOCK:
        if not obstacles(model.config):
            return convert(model)
    hf_model = LabkitGPTForCausalLM(LabkitGPTConfig.from_model(model))
    hf_model.gpt.load_state_dict(model.state_dict())
    return hf_model.eval()


# ---------------------------------------------------------------------------------------------- BERT


def _bert_config_kwargs(model: TinyBERT) -> dict:
    c = model.config
    return dict(vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layer,
                num_attention_heads=c.n_head, intermediate_size=c.d_ff, hidden_act="gelu",
                hidden_dropout_prob=c.dropout,
                attention_probs_dropout_prob=c.dropout, type_vocab_size=c.type_vocab_size,
                layer_norm_eps=c.layer_norm_eps, tie_word_embeddings=True)


def _norm(prefix: str, norm: nn.LayerNorm) -> dict[str, Tensor]:
    return {prefix + ".weight": norm.weight, prefix + ".bias": norm.bias}


def _linear(prefix: str, linear: nn.Linear) -> dict[str, Tensor]:
    return {prefix + ".weight": linear.weight, prefix + ".bias": linear.bias}


def _post_ln_bert(model: TinyBERT, pad_token_id: int) -> BertForPreTraining:
    c = model.config
    config = HFBertConfig(**_bert_config_kwargs(model), max_position_embeddings=c.max_len, pad_token_id=pad_token_id)
    weights = {"bert.embeddings.word_embeddings.weight": model.token_emb.weight,
               "bert.embeddings.position_embeddings.weight": model.pos_emb.table.weight,
               "bert.embeddings.token_type_embeddings.weight": model.segment_emb.weight,
               **_norm("bert.embeddings.LayerNorm", model.emb_norm),
               **_linear("bert.pooler.dense", model.nsp_head.pooler),
               "cls.predictions.bias": model.mlm_head.decoder.bias,  # its decoder's weight is the word embeddings
               **_linear("cls.predictions.transform.dense", model.mlm_head.dense),
               **_norm("cls.predictions.transform.LayerNorm", model.mlm_head.norm),
               **_linear("cls.seq_relationship", model.nsp_head.classifier)}
    for i, block in enumerate(model.blocks):
        for hf_path, ours in BERT_LAYER_PARTS.items():  # the same map EncoderBlock.from_bert_layer reads
            module = block.get_submodule(ours)
            weights.update({f"bert.encoder.layer.{i}.{hf_path}.{name}": p for name, p in module.named_parameters()})
    return _load_weights(BertForPreTraining(config), weights)


# A pre-LN EncoderBlock's parts and where they sit in a RobertaPreLayerNormLayer.
_PRE_LN_PARTS = {"attention.LayerNorm": "norm1", "attention.self.query": "self_attn.q_proj",
                 "attention.self.key": "self_attn.k_proj", "attention.self.value": "self_attn.v_proj",
                 "attention.output.dense": "self_attn.out_proj", "intermediate.LayerNorm": "norm2",
                 "intermediate.dense": "ff.linear1", "output.dense": "ff.linear2"}


def _pre_ln_bert(model: TinyBERT, pad_token_id: int) -> RobertaPreLayerNormForMaskedLM:
    c, d = model.config, model.config.d_model
    # RoBERTa numbers the real tokens from pad_token_id + 1 (padding keeps pad_token_id): the table moves down.
    offset = pad_token_id + 1
    positions = torch.cat([torch.zeros(offset, d), model.pos_emb.table.weight.detach()])
    config = RobertaPreLayerNormConfig(**_bert_config_kwargs(model), max_position_embeddings=c.max_len + offset,
                                       pad_token_id=pad_token_id, bos_token_id=None, eos_token_id=None)
    prefix = "roberta_prelayernorm."
    weights = {prefix + "embeddings.word_embeddings.weight": model.token_emb.weight,
               prefix + "embeddings.position_embeddings.weight": positions,
               prefix + "embeddings.token_type_embeddings.weight": model.segment_emb.weight,
               **_norm(prefix + "embeddings.LayerNorm", model.emb_norm), **_norm(prefix + "LayerNorm", model.norm),
               "lm_head.bias": model.mlm_head.decoder.bias,
               **_linear("lm_head.dense", model.mlm_head.dense), **_norm("lm_head.layer_norm", model.mlm_head.norm)}
    for i, block in enumerate(model.blocks):
        for hf_path, ours in _PRE_LN_PARTS.items():
            module = block.get_submodule(ours)
            weights.update({f"{prefix}encoder.layer.{i}.{hf_path}.{name}": p for name, p in module.named_parameters()})
    return _load_weights(RobertaPreLayerNormForMaskedLM(config), weights)


def bert_to_hf(model: TinyBERT, *, pad_token_id: int = 0) -> PreTrainedModel:
    """A Hugging Face masked LM with the same outputs as `model` (and its `mlm_head` at every position).

    Post-LN (BERT's, `norm_first=False`) → `BertForPreTraining`: `.prediction_logits` (batch, seq, vocab) is
    mlm_head on every position, `.seq_relationship_logits` (batch, 2) the NSP head (BERT's pooler = NSPHead.pooler).
    Pre-LN (`norm_first=True`: a LayerNorm on the embeddings, before every sublayer and at the end) →
    `RobertaPreLayerNormForMaskedLM`, the one stock architecture with that layout; it has no NSP head, so the NSP
    head is left behind. RoBERTa numbers positions from pad_token_id + 1 and gives padding its own position, so the
    outputs agree at every real token of right-padded input (the tokenizer's default), not at the padding.
    pad_token_id: the tokenizer's [PAD] id (0 in BERT's WordPiece vocabulary).
    """
    _require_model(model, TinyBERT, "a TinyGPT goes to gpt_to_hf")
    vocab = model.config.vocab_size
    if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int) or not 0 <= pad_token_id < vocab:
        raise ValueError(f"pad_token_id must be an id in 0..{vocab - 1}, got {pad_token_id!r}")
    return (_pre_ln_bert if model.config.norm_first else _post_ln_bert)(model, pad_token_id)


# ---------------------------------------------------------------------------------------------- export


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike) -> Path:
    folder = Path(folder).expanduser()
    model.save_pretrained(folder)  # safetensors
    tokenizer.save_pretrained(folder)
    return folder


def _check_untrained(model: TinyGPT) -> None:
    """ValueError for a zero_init_proj model none of whose residual-writing projections has moved from zero: every
    block is still the identity, the model an untrained bigram table."""
    if not model.config.zero_init_proj:
        return
    writers = [block.self_attn.out_proj for block in model.blocks]
    writers += [block.ff.linear2 for block in model.blocks if block.ff is not None]
    if all(not proj.weight.any() for proj in writers):
        raise ValueError("model is untrained: it was built with zero_init_proj=True and every projection that writes "
                         "into the residual stream is still exactly zero (every block is the identity); train it "
                         "before exporting")


def export_gpt(model: TinyGPT, tokenizer: CharTokenizer, folder: str | os.PathLike) -> Path:
    """Save `model` (via `gpt_to_hf`) and `tokenizer` (via `char_tokenizer_to_hf`) into `folder`; return it.

    Load it back with AutoModelForCausalLM / AutoTokenizer / pipeline("text-generation", model=folder) (a
    LabkitGPTForCausalLM after `import labkit.export`). The tokenizer's model_max_length is the model's context.
    Raises TypeError for another model or tokenizer type, ValueError for a tokenizer of another vocabulary size or
    an untrained model (see `_check_untrained`).
    """
    _require_model(model, TinyGPT, "a TinyBERT goes to export_bert")
    if not isinstance(tokenizer, CharTokenizer):
        raise TypeError(f"tokenizer must be the labkit CharTokenizer the model was trained with, got "
                        f"{type(tokenizer).__name__}")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} characters but the model's vocab_size is "
                         f"{model.config.vocab_size}: pass the tokenizer the model was trained with")
    _check_untrained(model)
    hf_model, hf_tokenizer = gpt_to_hf(model), char_tokenizer_to_hf(tokenizer)
    config = hf_model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "max_seq_len", None)  # MPT's
    if context is not None:  # None: no limit (a LabkitGPT with ALiBi or no positions)
        hf_tokenizer.model_max_length = context
    return _save(hf_model, hf_tokenizer, folder)


def export_bert(model: TinyBERT, tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike) -> Path:
    """Save `model` (via `bert_to_hf`) and its WordPiece `tokenizer` into `folder`; return it. Load it back with
    AutoModelForMaskedLM / AutoTokenizer / pipeline("fill-mask", model=folder).

    TypeError for another model or tokenizer type; ValueError when the tokenizer's vocabulary (len(tokenizer),
    special tokens included) is not the model's vocab_size, or it has no mask or pad token.
    """
    _require_model(model, TinyBERT, "a TinyGPT goes to export_gpt")
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer (labkit.assets.load_tokenizer()), got "
                        f"{type(tokenizer).__name__}")
    if len(tokenizer) != model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}: pass the tokenizer the model was pretrained with")
    missing = [name for name in ("mask_token", "pad_token") if getattr(tokenizer, name) is None]
    if missing:
        raise ValueError(f"tokenizer has no {' and no '.join(missing)}; a masked LM needs both")
    return _save(bert_to_hf(model, pad_token_id=tokenizer.pad_token_id), tokenizer, folder)


_DEFAULT_LABEL = re.compile(r"LABEL_\d+")


def _unnamed(id2label: dict[int, str] | None) -> bool:
    """True when a classifier's labels have only transformers' default names LABEL_0, LABEL_1, ..."""
    return not id2label or all(_DEFAULT_LABEL.fullmatch(str(name)) for name in id2label.values())


def export_finetuned(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike) -> Path:
    """Save a fine-tuned Hugging Face classifier (`*ForSequenceClassification`) or tagger
    (`*ForTokenClassification`) and its tokenizer into `folder`; return it.

    The labels must have real names in `model.config.id2label` (pipelines answer with them); the default LABEL_0,
    LABEL_1, ... are refused: set `model.config.id2label = {0: "NEGATIVE", 1: "POSITIVE"}` (or load the model with
    id2label=...); label2id is set to match. ValueError too for a tokenizer with ids the model has no
    row for (`labkit.assets.check_tokenizer`).
    """
    suffixes = ("ForSequenceClassification", "ForTokenClassification")
    if not isinstance(model, PreTrainedModel) or not type(model).__name__.endswith(suffixes):
        raise TypeError(f"model must be a fine-tuned Hugging Face *ForSequenceClassification or "
                        f"*ForTokenClassification model, got {type(model).__name__}")
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    id2label = model.config.id2label
    if _unnamed(id2label):
        raise ValueError(f"model.config.id2label has only the default names {list(id2label.values())}: name the "
                         f"labels, e.g. model.config.id2label = {{0: 'NEGATIVE', 1: 'POSITIVE'}}, so that pipelines "
                         f"answer with them")
    check_tokenizer(tokenizer, model)
    model.config.label2id = {name: i for i, name in id2label.items()}
    return _save(model, tokenizer, folder)


def check_export(folder: str | os.PathLike) -> str:
    """The kind of model an export folder holds: one of KINDS' values ("causal-lm", "masked-lm",
    "sequence-classification", "token-classification").

    Checks that `folder` has config.json, weights (model.safetensors) and tokenizer files, that the config and the
    tokenizer load (offline) and agree on the vocabulary, and that a classifier names its labels; ValueError naming
    what is missing or wrong otherwise.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ValueError(f"folder {str(folder)!r} {'is not a folder' if path.exists() else 'does not exist'}")
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append("weights (model.safetensors)")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        missing.append(f"tokenizer files ({' or '.join(_TOKENIZER_FILES)})")
    if missing:
        raise ValueError(f"{path} is not an export: it has no {', no '.join(missing)}; write one with "
                         f"export_gpt, export_bert or export_finetuned")
    architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    kinds = [kind for name in architectures for suffix, kind in KINDS.items() if name.endswith(suffix)]
    if not kinds:
        raise ValueError(f"{path}/config.json describes {architectures or 'no architecture'}, not one of the kinds "
                         f"an export holds ({', '.join(f'*{suffix}' for suffix in KINDS)})")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{config.vocab_size}")
    if kinds[0].endswith("classification") and _unnamed(config.id2label):
        raise ValueError(f"{path}: the classifier's labels have only default names {list(config.id2label.values())}")
    return kinds[0]
