"""Hugging Face exports: every mapping gives the labkit model's outputs (within 1e-5), exported folders load back
through the Auto classes and pipelines offline, and every bad input is refused with a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, BertConfig as HFBertConfig,
                          BertForMaskedLM, BertForPreTraining, BertForSequenceClassification,
                          BertForTokenClassification, GPT2LMHeadModel, MptForCausalLM, PersimmonForCausalLM,
                          RobertaPreLayerNormForMaskedLM, pipeline)

from labkit.assets import load_tokenizer, packaged_encoder_dir
from labkit.corpus import CharTokenizer
from labkit.export import (LabkitGPTForCausalLM, bert_to_hf, char_tokenizer_to_hf, check_export, export_bert,
                           export_finetuned, export_gpt, gpt_to_hf, to_gpt2)
from labkit.generation import generate
from labkit.models import BertConfig, GPTConfig, TinyBERT, TinyGPT
from labkit.pretraining import fill_mask

TOL = 1e-5
TEXT = "Before we proceed, hear me speak.\nAll: Speak, speak! café ... ok?\n"
BLOCK = 16
# notebook 04's CPU recipe: no stock architecture computes it, so it exports as a LabkitGPTForCausalLM
RECIPE = dict(position="rope", qk_norm=True, activation="relu2", tie_head=False, zero_init_proj=True)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def chars() -> CharTokenizer:
    return CharTokenizer.from_text(TEXT)


@pytest.fixture(scope="module")
def wordpiece():
    return load_tokenizer()  # offline: the packaged MiniLM WordPiece tokenizer (30522 tokens, [PAD] = 0)


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter drawn from N(0, 0.3²), a trained model's spread rather than the near-uniform init; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def tiny_gpt(vocab_size: int = 23, **kwargs) -> TinyGPT:
    shape = dict(block_size=BLOCK, n_layer=2, n_head=4, d_model=32) | kwargs
    return randomised(TinyGPT(GPTConfig(vocab_size=vocab_size, **shape)))


def tiny_bert(vocab_size: int = 40, **kwargs) -> TinyBERT:
    return randomised(TinyBERT(BertConfig(vocab_size=vocab_size, max_len=24, n_layer=2, n_head=4, d_model=32,
                                          **kwargs)))


def max_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape
    return (ours - theirs).abs().max().item()


def ids(batch: int, seq: int, vocab: int = 23, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- GPT


# Every (position, activation) pair once; tie_head and bias take both values across them.
@pytest.mark.parametrize("position, activation, tie_head, bias", [
    ("learned", "gelu", True, True), ("learned", "relu", False, False), ("learned", "relu2", True, False),
    ("sinusoidal", "gelu", False, False), ("sinusoidal", "relu", True, True), ("sinusoidal", "relu2", False, True),
    ("none", "gelu", True, False), ("none", "relu", False, True), ("none", "relu2", True, True),
])
def test_to_gpt2_gives_the_same_logits(position, activation, tie_head, bias):
    model = tiny_gpt(position=position, activation=activation, tie_head=tie_head, bias=bias)
    hf = to_gpt2(model)
    assert isinstance(hf, GPT2LMHeadModel) and not hf.training
    c = hf.config
    assert (c.n_positions, c.n_embd, c.n_layer, c.n_head, c.n_inner) == (BLOCK, 32, 2, 4, 128)
    assert c.activation_function == activation and c.tie_word_embeddings == tie_head
    assert (hf.lm_head.weight is hf.transformer.wte.weight) == tie_head
    x = ids(3, BLOCK)
    with torch.no_grad():
        assert max_error(model(x), hf(x).logits) < TOL


@pytest.mark.parametrize("kwargs, stock", [
    (dict(), GPT2LMHeadModel),
    (dict(position="alibi"), MptForCausalLM),
    (dict(position="alibi", n_head=6, d_model=48, tie_head=False), MptForCausalLM),  # slopes of 6 heads
    (dict(position="rope", activation="relu2"), PersimmonForCausalLM),
    (dict(position="rope", bias=True, tie_head=False), PersimmonForCausalLM),
    (RECIPE, LabkitGPTForCausalLM),
    (dict(position="alibi", activation="relu2", bias=True), LabkitGPTForCausalLM),
    (dict(position="rope", attention_only=True), LabkitGPTForCausalLM),
])
def test_gpt_to_hf_picks_an_exact_architecture(kwargs, stock):
    model = tiny_gpt(**kwargs)
    hf = gpt_to_hf(model)
    assert type(hf) is stock and not hf.training
    seq = BLOCK if model.config.position == "learned" else 2 * BLOCK  # RoPE and ALiBi run past the context
    x = ids(2, seq)
    with torch.no_grad():
        assert max_error(model(x), hf(x).logits) < TOL


@pytest.mark.parametrize("kwargs", [dict(position="rope"), dict(position="alibi"), dict(qk_norm=True),
                                    dict(attention_only=True)])
def test_to_gpt2_names_what_gpt2_lacks(kwargs):
    key = next(iter(kwargs))
    with pytest.raises(ValueError, match=rf"GPT-2 cannot hold this TinyGPT exactly: {key}=.*gpt_to_hf"):
        to_gpt2(tiny_gpt(**kwargs))


def test_labkit_gpt_round_trip_loss_and_padding(chars, tmp_path):
    model = tiny_gpt(chars.vocab_size, **RECIPE)
    folder = export_gpt(model, chars, tmp_path / "recipe")
    assert check_export(folder) == "causal-lm"
    hf = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(hf, LabkitGPTForCausalLM) and not hf.training
    assert hf.config.max_position_embeddings == 16 * BLOCK and hf.config.gpt_config() == model.config
    x = ids(2, 2 * BLOCK, chars.vocab_size)
    with torch.no_grad():
        out = hf(x, labels=x)
        logits = model(x)
        assert max_error(logits, out.logits) < TOL
        expected = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        assert abs(out.loss.item() - expected.item()) < TOL
    padded = torch.ones_like(x)
    padded[0, :3] = 0
    with pytest.raises(ValueError, match="attention_mask holds zeros"):
        hf(x, attention_mask=padded)


@pytest.mark.parametrize("kwargs, context", [(dict(), BLOCK), (dict(position="alibi"), 16 * BLOCK),
                                             (dict(position="rope"), 16 * BLOCK), (RECIPE, 16 * BLOCK)],
                         ids=["gpt2", "mpt", "persimmon", "labkit-gpt"])
def test_text_generation_pipeline_matches_labkit_generate(chars, tmp_path, kwargs, context):
    model = tiny_gpt(chars.vocab_size, **kwargs)
    folder = export_gpt(model, chars, tmp_path / "gpt")
    assert AutoTokenizer.from_pretrained(folder).model_max_length == context
    prompt = "hear me"  # 7 + 9 new tokens: within the context, which labkit's generate would crop to
    ours = chars.decode(generate(model, chars.encode(prompt)[None], 9, block_size=BLOCK, greedy=True)[0])
    generated = pipeline("text-generation", model=str(folder))(prompt, max_new_tokens=9, do_sample=False)
    assert generated[0]["generated_text"] == ours


def test_char_tokenizer_round_trips(chars, tmp_path):
    text = "Speak, speak .\n hear café!\n\n"
    hf = char_tokenizer_to_hf(chars)
    assert hf(text)["input_ids"] == chars.encode(text).tolist()
    assert hf.decode(hf(text)["input_ids"]) == text  # spaces before "." and newlines survive
    assert len(hf) == chars.vocab_size and not hf.all_special_ids
    hf.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(TEXT)["input_ids"] == chars.encode(TEXT).tolist()
    assert loaded.decode(loaded(TEXT)["input_ids"]) == TEXT
    with pytest.raises(Exception, match=r"Missing \[UNK\] token"):  # "Z" is not in the alphabet: no id for it
        loaded("Zebra")


# ---------------------------------------------------------------------------------------------- BERT


def padded_pairs(vocab: int = 40) -> dict[str, torch.Tensor]:
    """Three right-padded sentence pairs (pad id 0): input_ids, token_type_ids, attention_mask, each (3, 20)."""
    input_ids = ids(3, 20, vocab - 1) + 1
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 10:] = 1
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 15:] = attention_mask[2, 8:] = 0
    input_ids[attention_mask == 0] = token_type_ids[attention_mask == 0] = 0
    return dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)


def labkit_bert_outputs(model: TinyBERT, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """mlm_head at every position (batch, seq, vocab) and the NSP logits (batch, 2)."""
    hidden = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return model.mlm_head(hidden), model.nsp_head(hidden)


def test_post_ln_bert_is_bert_for_pretraining():
    model, batch = tiny_bert(), padded_pairs()
    hf = bert_to_hf(model)
    assert isinstance(hf, BertForPreTraining) and not hf.training
    with torch.no_grad():
        mlm, nsp = labkit_bert_outputs(model, batch)
        out = hf(**batch)
    assert max_error(mlm, out.prediction_logits) < TOL  # padding included: both hide it as keys only
    assert max_error(nsp, out.seq_relationship_logits) < TOL


def test_pre_ln_bert_is_roberta_prelayernorm():
    model, batch = tiny_bert(norm_first=True), padded_pairs()
    hf = bert_to_hf(model)
    assert isinstance(hf, RobertaPreLayerNormForMaskedLM) and not hf.training
    assert hf.config.max_position_embeddings == 24 + 1  # positions start at pad_token_id + 1 = 1
    with torch.no_grad():
        mlm, _ = labkit_bert_outputs(model, batch)
        logits = hf(**batch).logits
    real = batch["attention_mask"].bool()  # RoBERTa gives padding its own position: compare the real tokens
    assert max_error(mlm[real], logits[real]) < TOL


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-ln", "pre-ln"])
def test_exported_bert_fills_masks_like_labkit(wordpiece, tmp_path, norm_first):
    model = tiny_bert(len(wordpiece), norm_first=norm_first)
    folder = export_bert(model, wordpiece, tmp_path / "bert")
    assert check_export(folder) == "masked-lm"
    hf = AutoModelForMaskedLM.from_pretrained(folder)
    assert isinstance(hf, RobertaPreLayerNormForMaskedLM if norm_first else BertForMaskedLM)
    batch = wordpiece(["the cat sat on the [MASK].", "a dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        mlm, _ = labkit_bert_outputs(model, dict(batch))
        real = batch["attention_mask"].bool()
        assert max_error(mlm[real], hf(**batch).logits[real]) < TOL
    assert AutoTokenizer.from_pretrained(folder)("the cat")["input_ids"] == wordpiece("the cat")["input_ids"]
    text = "the cat sat on the [MASK]."
    best = pipeline("fill-mask", model=str(folder))(text, top_k=1)[0]
    assert best["token_str"] == fill_mask(model, wordpiece, text, top_k=1)[0][0]


# ---------------------------------------------------------------------------------------------- fine-tuned


def tiny_hf_bert(cls: type, labels: list[str], wordpiece, favourite: str) -> nn.Module:
    """A tiny random BERT classifier or tagger whose output bias makes `favourite` the answer everywhere."""
    config = HFBertConfig(vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, id2label=dict(enumerate(labels)))
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():
        model.classifier.bias[labels.index(favourite)] = 10.0
    return model


def test_classifier_and_tagger_pipelines_answer_by_name(wordpiece, tmp_path):
    classifier = tiny_hf_bert(BertForSequenceClassification, ["NEGATIVE", "POSITIVE"], wordpiece, "POSITIVE")
    folder = export_finetuned(classifier, wordpiece, tmp_path / "classifier")
    assert check_export(folder) == "sequence-classification"
    answer = pipeline("text-classification", model=str(folder))("what a lovely day")
    assert answer[0]["label"] == "POSITIVE"

    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tagger = tiny_hf_bert(BertForTokenClassification, tags, wordpiece, "I-PER")
    folder = export_finetuned(tagger, wordpiece, tmp_path / "tagger")
    assert check_export(folder) == "token-classification"
    entities = pipeline("token-classification", model=str(folder), aggregation_strategy="simple")("alice met bob")
    # every word piece says I-PER: one PER entity, grouped across the three words
    assert [(e["entity_group"], e["word"]) for e in entities] == [("PER", "alice met bob")]


# ---------------------------------------------------------------------------------------------- bad input


def test_wrong_model_types_are_refused(chars, wordpiece, tmp_path):
    with pytest.raises(TypeError, match="model must be a labkit TinyGPT, got TinyBERT"):
        export_gpt(tiny_bert(chars.vocab_size), chars, tmp_path)
    with pytest.raises(TypeError, match="model must be a labkit TinyGPT, got Linear"):
        gpt_to_hf(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a labkit TinyGPT, got Linear"):
        to_gpt2(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a labkit TinyBERT, got TinyGPT"):
        export_bert(tiny_gpt(len(wordpiece)), wordpiece, tmp_path)
    with pytest.raises(TypeError, match=r"\*ForSequenceClassification or \*ForTokenClassification model, got "
                                        r"BertForPreTraining"):
        export_finetuned(bert_to_hf(tiny_bert(len(wordpiece))), wordpiece, tmp_path)
    with pytest.raises(TypeError, match="tokenizer must be the labkit CharTokenizer"):
        export_gpt(tiny_gpt(chars.vocab_size), wordpiece, tmp_path)
    with pytest.raises(TypeError, match="tokenizer must be a labkit CharTokenizer"):
        char_tokenizer_to_hf(wordpiece)
    with pytest.raises(ValueError, match="pad_token_id must be an id in 0..39"):
        bert_to_hf(tiny_bert(), pad_token_id=40)
    assert not list(tmp_path.iterdir())  # nothing was written


def test_mismatched_tokenizers_are_refused(chars, wordpiece, tmp_path):
    with pytest.raises(ValueError, match=rf"tokenizer has {chars.vocab_size} characters but the model's vocab_size "
                                         rf"is 23"):
        export_gpt(tiny_gpt(23), chars, tmp_path)
    with pytest.raises(ValueError, match="tokenizer has 30522 tokens but the model's vocab_size is 40"):
        export_bert(tiny_bert(40), wordpiece, tmp_path)
    tagger = tiny_hf_bert(BertForTokenClassification, ["O", "B-PER"], wordpiece, "O")
    tagger.resize_token_embeddings(100)
    with pytest.raises(ValueError, match="does not match the model"):
        export_finetuned(tagger, wordpiece, tmp_path)


def test_untrained_and_unnamed_models_are_refused(chars, wordpiece, tmp_path):
    torch.manual_seed(0)
    fresh = TinyGPT(GPTConfig(vocab_size=chars.vocab_size, block_size=BLOCK, n_layer=1, n_head=2, d_model=16,
                              zero_init_proj=True))
    with pytest.raises(ValueError, match="model is untrained: it was built with zero_init_proj=True"):
        export_gpt(fresh, chars, tmp_path)
    unnamed = tiny_hf_bert(BertForSequenceClassification, ["NEGATIVE", "POSITIVE"], wordpiece, "POSITIVE")
    unnamed.config.id2label = {0: "LABEL_0", 1: "LABEL_1"}
    with pytest.raises(ValueError, match=r"default names \['LABEL_0', 'LABEL_1'\]: name the labels"):
        export_finetuned(unnamed, wordpiece, tmp_path)


def test_check_export_names_what_a_folder_lacks(chars, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        check_export(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no config.json, no weights \(model.safetensors\), no tokenizer files"):
        check_export(tmp_path)
    gpt_to_hf(tiny_gpt(chars.vocab_size)).save_pretrained(tmp_path / "model-only")
    with pytest.raises(ValueError, match=r"is not an export: it has no tokenizer files \(tokenizer.json or "
                                         r"vocab.txt\)"):
        check_export(tmp_path / "model-only")
    with pytest.raises(ValueError, match=r"describes \['BertModel'\], not one of the kinds"):
        check_export(packaged_encoder_dir())  # a base encoder: no head, not an export
