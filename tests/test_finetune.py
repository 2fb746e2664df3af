"""labkit.finetune, finetune_data and finetune_metrics: label alignment, encoding real SST-2 / CoNLL-2003 slices, the
multi-task model, metrics, predict."""

import copy
import re
import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import sklearn.metrics
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from transformers.modeling_outputs import TokenClassifierOutput

from labkit.assets import PACKAGED_ENCODER, load_model
from labkit.data import NER_TAGS, SST2_LABELS, load_data
from labkit.finetune import MultiTaskModel, multitask_loss, predict_entities, predict_sentence, train_multitask
from labkit.finetune_data import align_labels, data_collator, encode_sentences, encode_tagged
from labkit.finetune_metrics import (accuracy, confusion_matrix, entity_scores, token_predictions_to_tags,
                                     trainer_metrics)
from labkit.presets import get_preset

ROWS = 64


pytestmark = pytest.mark.usefixtures("packaged_models_only")


@pytest.fixture(scope="module")
def tokenizer(packaged_tokenizer):
    return packaged_tokenizer


@pytest.fixture(scope="module")
def encoder():
    return load_model(PACKAGED_ENCODER, task="base").eval()


@pytest.fixture(scope="module")
def sst2(data_dir):
    return load_data("sst2")["train"].select(range(ROWS))


@pytest.fixture(scope="module")
def conll(data_dir):
    return load_data("conll2003")["train"].select(range(ROWS))


@pytest.fixture(scope="module")
def sst2_encoded(tokenizer, sst2):
    return encode_sentences(tokenizer, sst2["sentence"], sst2["label"], 128, SST2_LABELS)


@pytest.fixture(scope="module")
def conll_encoded(tokenizer, conll):
    return encode_tagged(tokenizer, conll["tokens"], conll["ner_tags"], 128, NER_TAGS)


def _batch(dataset, tokenizer, task, size=8):
    return next(iter(DataLoader(dataset, batch_size=size, collate_fn=data_collator(tokenizer, task))))


# ---------------------------------------------------------------------------------------------- align_labels


def test_align_labels_hand_example():
    # [CLS] word0 word0 word1 word2 word2 word2 [SEP]
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert align_labels(word_ids, [3, 0, 5]) == [-100, 3, -100, 0, 5, -100, -100, -100]


@pytest.mark.parametrize("word_labels, message", [
    ([1, 2], r"word id 2 has no label: word_labels has 2 labels"),
    ([1, -1, 0], r"word_labels\[1\] is -1; expected an int >= 0"),
    ([1, "B-PER", 0], r"word_labels\[1\] is 'B-PER'; expected an int >= 0"),
    ([1, 2.0, 0], r"word_labels\[1\] is 2.0; expected an int >= 0"),
])
def test_align_labels_errors(word_labels, message):
    with pytest.raises(ValueError, match=message):
        align_labels([None, 0, 1, 1, 2, None], word_labels)


def test_align_labels_on_real_conll(tokenizer, conll):
    encoded = tokenizer(list(conll["tokens"]), is_split_into_words=True, truncation=True, max_length=128)
    split_words = 0
    for i, (words, tags) in enumerate(zip(conll["tokens"], conll["ner_tags"])):
        word_ids = encoded.word_ids(i)
        labels = align_labels(word_ids, tags)
        assert len(labels) == len(word_ids)
        assert word_ids[0] is None and word_ids[-1] is None and labels[0] == labels[-1] == -100
        seen = set()
        for word, label in zip(word_ids, labels):
            if word is None or word in seen:
                assert label == -100
            else:
                assert label == tags[word]
                seen.add(word)
        assert sum(label != -100 for label in labels) == len(words)
        split_words += sum(word_ids.count(w) > 1 for w in range(len(words)))
    assert split_words > 10  # the slice really exercises words cut into several pieces


# ---------------------------------------------------------------------------------------------- encoding


def test_encode_sentences_on_sst2(tokenizer, sst2, sst2_encoded):
    assert len(sst2_encoded) == ROWS
    assert {"input_ids", "attention_mask", "labels"} <= set(sst2_encoded.column_names)
    assert sst2_encoded["labels"] == sst2["label"]
    assert sst2_encoded.features["labels"].names == SST2_LABELS
    for row, sentence in zip(sst2_encoded, sst2["sentence"]):
        assert row["input_ids"] == tokenizer(sentence)["input_ids"]
        assert row["input_ids"][0] == tokenizer.cls_token_id and row["input_ids"][-1] == tokenizer.sep_token_id
    batch = _batch(sst2_encoded, tokenizer, "sentence", size=16)
    longest = max(len(ids) for ids in sst2_encoded["input_ids"][:16])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (16, longest)
    assert batch["labels"].tolist() == sst2["label"][:16]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()


def test_encode_sentences_warns_once_when_truncating(tokenizer, sst2):
    max_len = 8
    too_long = sum(len(tokenizer(s)["input_ids"]) > max_len for s in sst2["sentence"])
    assert 0 < too_long < ROWS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoded = encode_sentences(tokenizer, sst2["sentence"], sst2["label"], max_len, SST2_LABELS)
    assert len(caught) == 1
    assert re.search(rf"^{too_long} of {ROWS} examples were longer than max_len=8 tokens and were truncated",
                     str(caught[0].message))
    assert max(len(ids) for ids in encoded["input_ids"]) == max_len


def test_encode_sentences_no_warning_without_truncation(tokenizer, sst2):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_sentences(tokenizer, sst2["sentence"][:8], sst2["label"][:8], 128, SST2_LABELS)


@pytest.mark.parametrize("sentences, labels, message", [
    (["fine", "", "good"], [1, 0, 1], r"sentences\[1\] is ''; expected a non-empty, non-whitespace string"),
    (["fine", " \t ", "good"], [1, 0, 1], r"sentences\[1\] is ' \\t '; expected a non-empty"),
    (["fine", None, "good"], [1, 0, 1], r"sentences\[1\] is None"),
    (["fine", "bad", "good"], [1, 2, 1], r"labels\[1\] is 2; expected an int in 0\.\.1 \(label_names has 2 names\)"),
    (["fine", "bad", "good"], [1, -1, 1], r"labels\[1\] is -1; expected an int in 0\.\.1"),
    (["fine", "bad", "good"], [1, 0], r"sentences has 3 items but labels has 2"),
    ("fine", [1], r"sentences must be a list of texts, got one str \('fine'\)"),
])
def test_encode_sentences_bad_input(tokenizer, sentences, labels, message):
    with pytest.raises(ValueError, match=message):
        encode_sentences(tokenizer, sentences, labels, 32, SST2_LABELS)


def test_encode_checks_arguments(tokenizer):
    with pytest.raises(ValueError, match=r"max_len must be a positive int, got 0"):
        encode_sentences(tokenizer, ["fine"], [1], 0, SST2_LABELS)
    with pytest.raises(ValueError, match=r"max_len must leave room for text beside the tokenizer's 2 special"):
        encode_sentences(tokenizer, ["fine"], [1], 2, SST2_LABELS)
    with pytest.raises(ValueError, match=r"label_names must be a non-empty list"):
        encode_sentences(tokenizer, ["fine"], [1], 16, [])
    with pytest.raises(TypeError, match=r"tokenizer must be a fast"):
        encode_tagged(SimpleNamespace(is_fast=False), [["a"]], [[0]], 16, NER_TAGS)


def test_encode_tagged_on_conll(tokenizer, conll, conll_encoded):
    assert len(conll_encoded) == ROWS
    for row, words, tags in zip(conll_encoded, conll["tokens"], conll["ner_tags"]):
        labelled = [label for label in row["labels"] if label != -100]
        assert labelled == tags  # each word's tag once, on its first piece, in order
        assert len(row["labels"]) == len(row["input_ids"]) == len(row["attention_mask"])
    batch = _batch(conll_encoded, tokenizer, "token")
    assert batch["input_ids"].shape == batch["labels"].shape
    padding = batch["attention_mask"] == 0
    assert padding.any() and (batch["labels"][padding] == -100).all()


def test_encode_tagged_warns_once_when_truncating(tokenizer, conll):
    max_len = 6
    with pytest.warns(UserWarning, match=r"of 64 examples were longer than max_len=6 tokens") as caught:
        encoded = encode_tagged(tokenizer, conll["tokens"], conll["ner_tags"], max_len, NER_TAGS)
    assert len([w for w in caught if "max_len" in str(w.message)]) == 1
    for row, words in zip(encoded, conll["tokens"]):
        assert len(row["input_ids"]) <= max_len
        assert sum(label != -100 for label in row["labels"]) <= len(words)


@pytest.mark.parametrize("tokens, tags, message", [
    ([["EU", "rejects", "German"]], [[3, 0]], r"token_lists\[0\] has 3 words but tag_lists\[0\] has 2 tags"),
    ([["EU", "rejects"]], [[3, 9]], r"tag_lists\[0\]\[1\] is 9; expected an int in 0\.\.8 \(label_names has 9"),
    ([["EU", "rejects"]], [[3, -1]], r"tag_lists\[0\]\[1\] is -1; expected an int in 0\.\.8"),
    ([["EU", " "]], [[3, 0]], r"token_lists\[0\]\[1\] is ' '; expected a non-empty"),
    ([["EU"], []], [[3], []], r"token_lists\[1\] is empty"),
    ([["EU"], ["rejects"]], [[3]], r"token_lists has 2 items but tag_lists has 1"),
    (["EU", "rejects"], [[3, 0]], r"token_lists\[0\] is a str \('EU'\); expected a list of words per example"),
])
def test_encode_tagged_bad_input(tokenizer, tokens, tags, message):
    with pytest.raises(ValueError, match=message):
        encode_tagged(tokenizer, tokens, tags, 32, NER_TAGS)


def test_data_collator_checks_task(tokenizer):
    with pytest.raises(ValueError, match=r"task must be one of \('sentence', 'token'\), got 'ner'"):
        data_collator(tokenizer, "ner")


# ---------------------------------------------------------------------------------------------- multi-task model


@pytest.fixture(scope="module")
def batches(tokenizer, sst2_encoded, conll_encoded):
    return _batch(sst2_encoded, tokenizer, "sentence", size=4), _batch(conll_encoded, tokenizer, "token", size=4)


@pytest.fixture(scope="module")
def multitask(encoder):
    torch.manual_seed(0)
    return MultiTaskModel(encoder, len(SST2_LABELS), len(NER_TAGS)).eval()


def test_multitask_shapes_and_losses_by_hand(multitask, encoder, batches):
    sentence_batch, token_batch = batches
    with torch.no_grad():
        sentence = multitask(**sentence_batch, task="sentence")
        token = multitask(**token_batch, task="token")
        no_labels = multitask(sentence_batch["input_ids"], sentence_batch["attention_mask"], task="sentence")
        hidden = encoder(**{k: v for k, v in sentence_batch.items() if k != "labels"}).last_hidden_state
        token_hidden = encoder(**{k: v for k, v in token_batch.items() if k != "labels"}).last_hidden_state
    assert sentence.logits.shape == (4, 2) and no_labels.loss is None
    assert token.logits.shape == (*token_batch["input_ids"].shape, len(NER_TAGS))
    torch.testing.assert_close(sentence.logits, multitask.sentence_head(hidden[:, 0]))
    torch.testing.assert_close(sentence.loss, F.cross_entropy(sentence.logits, sentence_batch["labels"]))
    torch.testing.assert_close(token.logits, multitask.token_head(token_hidden))
    scored = token_batch["labels"] != -100
    torch.testing.assert_close(token.loss, F.cross_entropy(token.logits[scored], token_batch["labels"][scored]))


def test_both_heads_share_one_encoder(encoder, batches):
    sentence_batch, token_batch = batches
    shared = copy.deepcopy(encoder)
    torch.manual_seed(0)
    model = MultiTaskModel(shared, 2, len(NER_TAGS), dropout=0.0).eval()
    assert model.encoder is shared
    encoder_ids = {id(p) for p in shared.parameters()}
    head_ids = {id(p) for head in (model.sentence_head, model.token_head) for p in head.parameters()}
    assert {id(p) for p in model.parameters()} == encoder_ids | head_ids and len(head_ids) == 4

    with torch.no_grad():
        before = model(**sentence_batch, task="sentence").logits
    head_before = model.sentence_head.weight.detach().clone()
    embedding_before = shared.embeddings.word_embeddings.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(**token_batch, task="token").loss.backward()
    assert model.sentence_head.weight.grad is None  # the token loss never reaches the sentence head...
    assert shared.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0  # ...but does reach the encoder
    optimizer.step()
    with torch.no_grad():
        after = model(**sentence_batch, task="sentence").logits
    assert torch.equal(model.sentence_head.weight, head_before)
    assert not torch.equal(shared.embeddings.word_embeddings.weight, embedding_before)
    assert (after - before).abs().max() > 1e-4  # the sentence head sees the encoder the token step changed


def test_multitask_loss_is_the_weighted_sum(multitask, batches):
    sentence_batch, token_batch = batches
    with torch.no_grad():
        losses = multitask_loss(multitask, sentence_batch, token_batch, weights=(0.3, 2.0))
        sentence = multitask(**sentence_batch, task="sentence").loss
        token = multitask(**token_batch, task="token").loss
        default = multitask_loss(multitask, sentence_batch, token_batch)
    assert losses["loss"].dim() == 0
    torch.testing.assert_close(losses["loss"], 0.3 * sentence + 2.0 * token)
    torch.testing.assert_close(losses["sentence"], sentence)
    torch.testing.assert_close(losses["token"], token)
    torch.testing.assert_close(default["loss"], sentence + token)


def test_multitask_errors(multitask, encoder, batches):
    sentence_batch, token_batch = batches
    with pytest.raises(ValueError, match=r"task must be one of \('sentence', 'token'\), got 'ner'"):
        multitask(**sentence_batch, task="ner")
    with pytest.raises(ValueError, match=r"weights must be two finite numbers >= 0 .* got \(1\.0, -1\.0\)"):
        multitask_loss(multitask, sentence_batch, token_batch, weights=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"token_batch must hold 'input_ids' and 'labels'"):
        multitask_loss(multitask, sentence_batch, {"input_ids": token_batch["input_ids"]})
    with pytest.raises(TypeError, match=r"encoder must be a Hugging Face model with config.hidden_size, got Linear"):
        MultiTaskModel(nn.Linear(2, 2), 2, 9)
    with pytest.raises(ValueError, match=r"num_token_labels must be a positive int, got 0"):
        MultiTaskModel(encoder, 2, 0)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1\.0"):
        MultiTaskModel(encoder, 2, 9, dropout=1.0)


def test_train_multitask_lowers_both_losses_and_repeats(encoder, sst2_encoded, conll_encoded, tokenizer):
    """Both heads learn from the mixed steps, and the same seed gives the same losses."""

    config = replace(get_preset("multitask", "smoke").train, steps=24, batch_size=16, lr=2e-4)

    def run():
        torch.manual_seed(0)
        model = MultiTaskModel(copy.deepcopy(encoder), len(SST2_LABELS), len(NER_TAGS))
        return train_multitask(model, sst2_encoded, conll_encoded, tokenizer, config, progress=False)

    history = run()
    assert history.step == 24 and set(history.losses) == {"loss", "sentence", "token"}
    for task in ("sentence", "token"):
        first, last = np.mean(history.losses[task][:4]), np.mean(history.losses[task][-4:])
        assert last < 0.8 * first, (task, first, last)
    assert history.train_loss == pytest.approx(np.add(history.losses["sentence"], history.losses["token"]))
    assert run().losses == history.losses


# ---------------------------------------------------------------------------------------------- metrics


def test_accuracy_on_ids_logits_and_ignored_positions():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # predicts 0, 1, 0
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert accuracy(np.array([[0, 1, 2]]), np.array([[0, -100, 1]])) == 0.5
    with pytest.raises(ValueError, match=r"predictions must be ids shaped like labels \(3,\)"):
        accuracy([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match=r"labels holds no scored position"):
        accuracy([1, 0], [-100, -100])


def test_confusion_matrix_matches_sklearn():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (200,), generator=generator)
    predictions = torch.randint(0, 4, (200,), generator=generator)
    counts = confusion_matrix(predictions, labels, 4)
    expected = sklearn.metrics.confusion_matrix(labels.numpy(), predictions.numpy(), labels=range(4))
    assert counts.shape == (4, 4) and counts.dtype == torch.long
    assert np.array_equal(counts.numpy(), expected)
    logits = F.one_hot(predictions, 5).float()  # logits over 5 classes
    assert torch.equal(confusion_matrix(logits[:, :4], labels, 4), counts)
    with pytest.raises(ValueError, match=r"predictions holds class 4; expected ids in 0\.\.3 \(n_classes=4\)"):
        confusion_matrix(logits.argmax(-1) * 0 + 4, labels, 4)


def test_token_predictions_to_tags_drops_ignored_positions():
    labels = torch.tensor([[-100, 1, -100, 2, 0, -100], [-100, 5, 0, -100, -100, -100]])
    predictions = torch.tensor([[0, 1, 2, 2, 3, 0], [0, 5, 5, 0, 0, 0]])
    true, predicted = token_predictions_to_tags(predictions, labels, NER_TAGS)
    assert true == [["B-PER", "I-PER", "O"], ["B-LOC", "O"]]
    assert predicted == [["B-PER", "I-PER", "B-ORG"], ["B-LOC", "B-LOC"]]
    logits = F.one_hot(predictions, len(NER_TAGS)).float().numpy()  # Trainer hands over numpy logits
    assert token_predictions_to_tags(logits, labels.numpy(), NER_TAGS) == (true, predicted)
    with pytest.raises(ValueError, match=r"tag id 9 is outside label_names; expected ids in 0\.\.8"):
        token_predictions_to_tags(torch.where(predictions == 5, 9, predictions), labels, NER_TAGS)


def test_entity_scores_hand_worked():
    # true: PER "John Smith", PER "Anna", LOC "Paris"; predicted: both PERs right, Paris called ORG.
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-PER", "O"]]
    scores = entity_scores(true, predicted)
    assert scores["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert scores["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["overall"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    # A boundary half right is an entity wrong: "John Smith" predicted as "John" only.
    half = entity_scores([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert half["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # 1 right of 2 predicted and 3 true: precision 1/2, recall 1/3, F1 = 2PR/(P+R) = 2/5.
    partial = entity_scores([["B-PER", "O", "B-LOC", "B-ORG"]], [["B-PER", "B-MISC", "O", "O"]])["overall"]
    assert partial == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "support": 3})


def test_entity_scores_errors():
    with pytest.raises(ValueError, match=r"true_tag_lists\[0\] has 2 tags but predicted_tag_lists\[0\] has 1"):
        entity_scores([["B-PER", "O"]], [["B-PER"]])
    with pytest.raises(ValueError, match=r"true_tag_lists has 2 items but predicted_tag_lists has 1"):
        entity_scores([["O"], ["O"]], [["O"]])


def test_trainer_metrics_on_numpy_predictions():
    sentence = trainer_metrics("sentence")((np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])))
    assert sentence == {"accuracy": 0.5}
    labels = np.array([[-100, 1, 2, 0, 5, -100]])
    logits = F.one_hot(torch.tensor([[0, 1, 2, 0, 0, 0]]), len(NER_TAGS)).float().numpy()  # LOC missed
    token = trainer_metrics("token", NER_TAGS)((logits, labels))
    assert token == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "accuracy": 0.75})
    with pytest.raises(ValueError, match=r"task='token' needs label_names"):
        trainer_metrics("token")


# ---------------------------------------------------------------------------------------------- prediction


@pytest.fixture(scope="module")
def sentence_classifier():
    torch.manual_seed(0)
    return load_model(PACKAGED_ENCODER, task="sequence-classification", num_labels=len(SST2_LABELS))


@pytest.fixture(scope="module")
def token_classifier():
    torch.manual_seed(0)
    return load_model(PACKAGED_ENCODER, task="token-classification", num_labels=len(NER_TAGS))


def test_predict_sentence(sentence_classifier, tokenizer, multitask):
    sentence_classifier.train()
    ranked = predict_sentence(sentence_classifier, tokenizer, "a gripping, beautifully acted film", SST2_LABELS)
    assert sentence_classifier.training  # its mode is given back
    assert sorted(label for label, _ in ranked) == sorted(SST2_LABELS)
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-6) and all(0 <= p <= 1 for p in probabilities)
    again = predict_sentence(sentence_classifier, tokenizer, "a gripping, beautifully acted film", SST2_LABELS)
    assert again == ranked  # eval mode: no dropout noise
    multi = predict_sentence(multitask, tokenizer, "dull and far too long", SST2_LABELS, task="sentence")
    assert len(multi) == 2 and sum(p for _, p in multi) == pytest.approx(1.0, abs=1e-6)


def test_predict_entities(token_classifier, tokenizer, multitask):
    text = "  EU rejects German call to boycott British lamb .\n"
    tagged = predict_entities(token_classifier, tokenizer, text, NER_TAGS)
    assert [word for word, _ in tagged] == text.split()
    assert all(tag in NER_TAGS for _, tag in tagged)
    multi = predict_entities(multitask, tokenizer, "Angela Merkel visited Wrocław", NER_TAGS, task="token")
    assert [word for word, _ in multi] == ["Angela", "Merkel", "visited", "Wrocław"]
    assert all(tag in NER_TAGS for _, tag in multi)


class PositionProbe(nn.Module):
    """Predicts tag (position % n_tags) at each position, so the tag shows which sub-token it was read from."""

    def __init__(self, n_tags: int) -> None:
        super().__init__()
        self.n_tags = n_tags

    def forward(self, input_ids, **kwargs):
        positions = torch.arange(input_ids.shape[1]) % self.n_tags
        return TokenClassifierOutput(logits=F.one_hot(positions, self.n_tags).float()[None])


def test_predict_entities_reads_each_words_first_sub_token(tokenizer):
    words = ["Transformers", "tokenize", "Wrocław", "carefully"]
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    assert len(word_ids) > len(words) + 2  # some word is cut into several pieces
    first = [word_ids.index(i) for i in range(len(words))]
    tagged = predict_entities(PositionProbe(len(NER_TAGS)), tokenizer, " ".join(words), NER_TAGS)
    assert tagged == [(word, NER_TAGS[position % len(NER_TAGS)]) for word, position in zip(words, first)]


@pytest.mark.parametrize("text, message", [("", r"text is ''; expected a non-empty"),
                                           ("  \n ", r"text is '  \\n '; expected a non-empty")])
def test_predict_rejects_empty_text(sentence_classifier, token_classifier, tokenizer, text, message):
    with pytest.raises(ValueError, match=message):
        predict_sentence(sentence_classifier, tokenizer, text, SST2_LABELS)
    with pytest.raises(ValueError, match=message):
        predict_entities(token_classifier, tokenizer, text, NER_TAGS)


def test_predict_checks_label_names(sentence_classifier, tokenizer):
    with pytest.raises(ValueError, match=r"the model gives 2 logits per prediction but label_names has 9 names"):
        predict_sentence(sentence_classifier, tokenizer, "fine", NER_TAGS)


@pytest.mark.parametrize("task, labels", [("sentence", SST2_LABELS), ("token", NER_TAGS)])
def test_load_or_finetune_fine_tunes_once_then_loads(task, labels, data_dir, tmp_path, monkeypatch, capsys):
    """A missing folder gets notebook 06's model fine-tuned with the preset for the device (here two steps on 16
    examples) and saved with its tokenizer and label names; the second call loads it, the same weights."""
    import labkit.presets
    from labkit.finetune import load_or_finetune
    from labkit.presets import Preset, finetune_recipe

    tiny = Preset("smoke", finetune_recipe(2, batch_size=8), data=dict(train_examples=16))
    monkeypatch.setattr(labkit.presets, "preset_for", lambda device, family: tiny)
    folder = tmp_path / "runs" / "06-model"
    model, tokenizer = load_or_finetune(folder, task)
    printed = capsys.readouterr().out
    what = "sentiment classifier" if task == "sentence" else "NER tagger"
    assert f"{folder} holds no model: fine-tuning notebook 06's {what} with the 'smoke' preset now" in printed
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert not model.training and model.config.id2label == dict(enumerate(labels))
    kind = "SequenceClassification" if task == "sentence" else "TokenClassification"
    assert type(model).__name__.endswith(f"For{kind}") and tokenizer.is_fast

    again, _ = load_or_finetune(folder, task)
    assert capsys.readouterr().out == f"notebook 06's {what} from {folder}\n"
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match=r"task must be one of \('sentence', 'token'\), got 'ner'"):
        load_or_finetune(folder, "ner")

