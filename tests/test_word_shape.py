"""labkit.word_shape: word shapes, their alignment to word pieces, padding, and the tagger that reads them."""

import pytest
import torch
from torch.utils.data import DataLoader

import labkit.data as data
from labkit.assets import PACKAGED_ENCODER, load_model, load_tokenizer
from labkit.data import NER_TAGS
from labkit.finetune import predict_entities, score_dataset
from labkit.finetune_data import data_collator, encode_tagged
from labkit.word_shape import SHAPES, ShapeAwareTagger, shape_ids, word_shape

pytestmark = pytest.mark.usefixtures("packaged_models_only")


@pytest.fixture(scope="module")
def tagger():
    torch.manual_seed(0)
    return ShapeAwareTagger(load_model(PACKAGED_ENCODER, task="token-classification", num_labels=len(NER_TAGS)))


@pytest.mark.parametrize("word, shape", [
    ("apple", "lower"), ("Apple", "Capitalized"), ("McDonald", "Capitalized"), ("EU", "UPPER"), ("U.S.", "UPPER"),
    ("A", "UPPER"), ("iPhone", "mixed"), ("eBay", "mixed"), ("1996", "no letters"), ("--", "no letters"),
    ("Zürich", "Capitalized"), ("ÉCOLE", "UPPER"), ("3M", "UPPER"), ("x86", "lower"),
])
def test_word_shape(word, shape):
    assert SHAPES[word_shape(word)] == shape


@pytest.mark.parametrize("word", ["", None, 5])
def test_word_shape_refuses_non_words(word):
    with pytest.raises(ValueError, match="word must be a non-empty str"):
        word_shape(word)


def test_shape_ids_follow_the_word_pieces(packaged_tokenizer):
    words = ["Gazprom", "sued", "NATO", "in", "1996"]
    encoded = packaged_tokenizer(words, is_split_into_words=True)
    ids = shape_ids(encoded.word_ids(), words)
    pieces = packaged_tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert len(pieces) > len(words) + 2  # "gazprom" is several pieces: every one carries the word's shape
    expected = [0] + [word_shape(words[w]) for w in encoded.word_ids()[1:-1]] + [0]
    assert ids == expected
    assert [SHAPES[i] for i in ids][:2] == ["special", "Capitalized"] and SHAPES[ids[-2]] == "no letters"
    with pytest.raises(ValueError, match="word id 3 has no word: 3 words were given"):
        shape_ids(encoded.word_ids(), words[:3])


def test_encoded_shapes_are_padded_like_the_tokens(packaged_tokenizer, data_dir):
    conll = data.load_data("conll2003")["validation"].select(range(16))
    encoded = encode_tagged(packaged_tokenizer, conll["tokens"], conll["ner_tags"], 128, NER_TAGS, with_shapes=True)
    plain = encode_tagged(packaged_tokenizer, conll["tokens"], conll["ner_tags"], 128, NER_TAGS)
    assert "shape_ids" not in plain.column_names
    for row, words in zip(encoded, conll["tokens"]):
        assert len(row["shape_ids"]) == len(row["input_ids"])
        assert row["shape_ids"] == shape_ids(packaged_tokenizer(words, is_split_into_words=True).word_ids(), words)
    batch = next(iter(DataLoader(encoded, batch_size=16, collate_fn=data_collator(packaged_tokenizer, "token"))))
    assert batch["shape_ids"].shape == batch["input_ids"].shape == batch["labels"].shape
    padding = batch["attention_mask"] == 0
    assert padding.any() and (batch["shape_ids"][padding] == 0).all()
    for i, row in enumerate(encoded):
        assert batch["shape_ids"][i, :len(row["shape_ids"])].tolist() == row["shape_ids"]


def test_left_padding_puts_shapes_where_the_tokens_are(packaged_tokenizer):
    left = load_tokenizer(PACKAGED_ENCODER)
    left.padding_side = "left"
    encoded = encode_tagged(left, [["Paris"], ["The", "EU", "and", "NATO"]], [[5], [0, 3, 0, 3]], 32, NER_TAGS,
                            with_shapes=True)
    batch = data_collator(left, "token")(list(encoded))
    assert batch["input_ids"][0, 0] == left.pad_token_id
    assert batch["shape_ids"][0].tolist()[-3:] == [0, word_shape("Paris"), 0]
    assert (batch["shape_ids"][batch["attention_mask"] == 0] == 0).all()
    assert batch["shape_ids"][1].tolist() == encoded[1]["shape_ids"]


def test_zero_shapes_leave_the_tagger_as_it_was(tagger, packaged_tokenizer):
    inputs = packaged_tokenizer(["Apple", "sued", "the", "EU"], is_split_into_words=True, return_tensors="pt")
    shapes = torch.tensor([shape_ids(inputs.word_ids(), ["Apple", "sued", "the", "EU"])])
    tagger.eval()
    with torch.no_grad():
        plain = tagger.tagger(**inputs).logits
        torch.testing.assert_close(tagger(**inputs, shape_ids=shapes).logits, plain, rtol=0, atol=1e-6)
        torch.testing.assert_close(tagger(**inputs).logits, plain, rtol=0, atol=1e-6)
        moved = ShapeAwareTagger(tagger.tagger)
        upper = torch.randn(384, generator=torch.Generator().manual_seed(0))  # not constant: LayerNorm removes that
        moved.shape_embedding.weight[SHAPES.index("UPPER")] = upper
        changed = moved(**inputs, shape_ids=shapes).logits
    assert (changed - plain).abs().max() > 1e-2  # "EU" is UPPER: its shape now reaches the logits
    assert moved.shape_norms()["UPPER"] == pytest.approx(upper.norm().item())
    assert moved.shape_norms()["lower"] == 0


def test_tagger_checks_its_inputs(tagger, packaged_tokenizer):
    # [CLS] apple sued [SEP]
    inputs = packaged_tokenizer(["Apple", "sued"], is_split_into_words=True, return_tensors="pt")
    with pytest.raises(ValueError, match=r"shape_ids must be shaped like input_ids \(1, 4\), got \(1, 5\)"):
        tagger(**inputs, shape_ids=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="tagger must be a Hugging Face model"):
        ShapeAwareTagger(torch.nn.Linear(3, 3))


def test_predict_entities_hands_the_tagger_its_shapes(tagger, packaged_tokenizer, monkeypatch):
    seen = {}
    forward = tagger.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return forward(*args, **kwargs)

    monkeypatch.setattr(tagger, "forward", spy)
    tagged = predict_entities(tagger, packaged_tokenizer, "Apple sued the EU", NER_TAGS)
    assert [word for word, _ in tagged] == ["Apple", "sued", "the", "EU"] and all(tag in NER_TAGS for _, tag in tagged)
    assert [SHAPES[i] for i in seen["shape_ids"][0].tolist()] == ["special", "Capitalized", "lower", "lower", "UPPER",
                                                                  "special"]


def test_trainer_feeds_the_shapes_and_scores_them(tmp_path, packaged_tokenizer, data_dir):
    """Trainer keeps the shape_ids column (forward names it) and the shape vectors learn; score_dataset passes them."""
    from transformers import Trainer

    from labkit.presets import finetune_recipe
    from labkit.trainer_setup import training_arguments

    conll = data.load_data("conll2003")["train"].select(range(64))
    encoded = encode_tagged(packaged_tokenizer, conll["tokens"], conll["ner_tags"], 64, NER_TAGS, with_shapes=True)
    torch.manual_seed(0)
    model = ShapeAwareTagger(load_model(PACKAGED_ENCODER, task="token-classification", num_labels=len(NER_TAGS)))
    Trainer(model=model, args=training_arguments(tmp_path, finetune_recipe(8, batch_size=8, lr=5e-4), progress=False),
            train_dataset=encoded, data_collator=data_collator(packaged_tokenizer, "token")).train()
    norms = model.shape_norms()
    assert all(norms[shape] > 0 for shape in ("lower", "Capitalized", "UPPER", "no letters"))
    scores = score_dataset(model, encoded, packaged_tokenizer, "token", NER_TAGS)
    assert 0 <= scores["entities"]["overall"]["f1"] <= 1 and scores["accuracy"] > 0.5
