"""Notebook 06's checkers: a right answer written by hand passes, each plausible mistake is refused with its own
message (WRONG_ANSWERS, run by tests/test_exercises.py), the references agree with Hugging Face's BERT heads and
losses and with labkit's functions, and the span reading used to recognise mistakes agrees with seqeval."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkit.exercises import check
from labkit.exercises.finetune import (_scores, reference_classification_head, reference_fine_tuning_step,
                                       reference_sentence_accuracy, reference_word_shape_name)
from labkit.finetune_metrics import accuracy, entity_scores
from labkit.word_shape import SHAPES, word_shape

# --- wrong answers: the classification head ----------------------------------------------------------------------


def _head(pick=lambda h: h[:, 0], activation=torch.tanh, transpose=True, biases=True, end=lambda x: x):
    def classification_head(hidden, pooler_weight, pooler_bias, classifier_weight, classifier_bias):
        w = pooler_weight.T if transpose else pooler_weight
        pooled = activation(pick(hidden) @ w + (pooler_bias if biases else 0))
        return end(pooled @ classifier_weight.T + (classifier_bias if biases else 0))
    return classification_head


# --- wrong answers: one fine-tuning step -------------------------------------------------------------------------


def _step(*, pass_labels=False, mask=True, softmax=False, flatten=True, count_ignored=False, clip="norm",
          clip_after=False, max_norm_override=None, step=True, zero_grad="end", loss_after=False, as_tensor=False):
    def fine_tuning_step(model, batch, optimizer, max_norm=1.0):
        inputs = {k: v for k, v in batch.items() if pass_labels or k != "labels"}
        if not mask:
            inputs.pop("attention_mask")
        logits = model(**inputs).logits
        labels = batch["labels"].clamp(min=0) if count_ignored else batch["labels"]
        if softmax:
            logits = logits.softmax(-1)
        loss = F.cross_entropy(logits.flatten(0, -2), labels.flatten()) if flatten else F.cross_entropy(logits,
                                                                                                        labels)
        if zero_grad == "start":
            optimizer.zero_grad()
        loss.backward()
        if zero_grad == "between":
            optimizer.zero_grad()
        norm = max_norm if max_norm_override is None else max_norm_override

        def clip_now():
            if clip == "norm":
                torch.nn.utils.clip_grad_norm_(model.parameters(), norm)
            elif clip == "value":
                torch.nn.utils.clip_grad_value_(model.parameters(), norm)

        if not clip_after:
            clip_now()
        if step:
            optimizer.step()
        if clip_after:
            clip_now()
        if zero_grad == "end":
            optimizer.zero_grad()
        if loss_after:
            with torch.no_grad():
                out = {k: v for k, v in batch.items() if k != "labels"}
                return F.cross_entropy(model(**out).logits.flatten(0, -2), batch["labels"].flatten()).item()
        return loss.detach() if as_tensor else loss.item()
    return fine_tuning_step


# --- wrong answers: sentence accuracy ----------------------------------------------------------------------------


def _accuracy(dim=-1, share=True, as_tensor=False, error_rate=False):
    def sentence_accuracy(logits, labels):
        right = (logits.argmax(dim) == labels).float()
        value = right.mean() if share else right.sum()
        value = 1 - value if error_rate else value
        return value if as_tensor else value.item()
    return sentence_accuracy


def _threshold_accuracy(logits, labels):
    return ((logits.softmax(-1)[:, 1] > 0.5).long() == labels).float().mean().item()


# --- wrong answers: word shapes ----------------------------------------------------------------------------------


def _shape(no_letters_first=True, upper_before_capitalized=True, title_rule=False, letters_only=True,
           names=SHAPES):
    def word_shape_name(word):
        letters = [c for c in word if c.isalpha()] if letters_only else list(word)
        if no_letters_first and not any(c.isalpha() for c in word):
            return names[5]
        if all(c.islower() for c in letters):
            return names[1]
        if upper_before_capitalized and all(c.isupper() for c in letters):
            return names[3]
        if letters[0].isupper() and (not title_rule or all(c.islower() for c in letters[1:])):
            return names[2]
        return names[4]
    return word_shape_name


# --- wrong answers: word labels and entity F1 --------------------------------------------------------------------


def _align(word_ids, word_labels, special=-100, continuation=-100, last_piece=False):
    labels = []
    for i, word in enumerate(word_ids):
        if word is None:
            labels.append(special)
            continue
        neighbour = word_ids[i + 1] if last_piece else word_ids[i - 1]
        labels.append(continuation if neighbour == word else word_labels[word])
    return labels


def _spans(tags, strict=False):
    spans, current = set(), None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        if current and (prefix != "I" or kind != current[0]):
            spans.add((current[0], current[1], i - 1))
            current = None
        if prefix == "B" or (prefix == "I" and current is None and not strict):
            current = (kind, i)
    return spans


def _f1(true_tags, predicted_tags, strict=False, measure="f1", boundaries=True):
    def collect(tag_lists):
        return {(n, *(s if boundaries else s[:1])) for n, tags in enumerate(tag_lists) for s in _spans(tags, strict)}

    true, predicted = collect(true_tags), collect(predicted_tags)
    right = len(true & predicted)
    precision, recall = right / len(predicted), right / len(true)  # no guard: one wrong answer divides by zero
    if measure == "precision":
        return precision
    if measure == "recall":
        return recall
    return 2 * precision * recall / (precision + recall)


WRONG_ANSWERS = {
    "classification_head": [
        (_head(pick=lambda h: h.mean(1)), "you averaged every token's vector"),
        (_head(pick=lambda h: h[:, -1]), "you read the last position"),
        (_head(pick=lambda h: h), "you scored every token"),
        (_head(end=lambda x: x.softmax(-1)), "those are probabilities"),
        (lambda h, wp, bp, wc, bc: h[:, 0] @ wc.T + bc, "the pooler is skipped"),
        (_head(activation=lambda x: x), "no tanh after the pooler's dense layer"),
        (_head(activation=F.gelu), "GELU after the pooler's dense layer"),
        (_head(transpose=False), "pooler_weight is used untransposed"),
        (_head(activation=lambda x: x, end=torch.tanh), "tanh on the logits"),
        (_head(biases=False), "the biases are left out"),
    ],
    "fine_tuning_step": [
        (_step(pass_labels=True), "the labels went into the model"),
        (_step(mask=False), "the loss without the attention mask"),
        (_step(softmax=True), "the cross-entropy of softmax(logits)"),
        (_step(count_ignored=True), "the −100 positions count in the loss"),
        (_step(flatten=False), "flatten them to (batch·seq, n_labels)"),
        (_step(as_tensor=True), "return the loss as a float"),
        (_step(loss_after=True), "is the loss after the step"),
        (_step(step=False), "the weights did not change"),
        (_step(zero_grad="between"), "the weights did not change"),
        (_step(zero_grad="never"), "the gradients of the previous batch are still there"),
        (_step(clip="none"), "gradients that were not clipped"),
        (_step(clip_after=True), "gradients that were not clipped"),
        (_step(max_norm_override=1.0), "clipped to norm 1.0; clip to max_norm = 0.1"),
        (_step(clip="value"), "clip_grad_value_"),
    ],
    "sentence_accuracy": [
        (_accuracy(share=False), "is the number right; divide by the number of sentences, 4"),
        (_accuracy(as_tensor=True), "returned a tensor"),
        (_accuracy(error_rate=True), "is the error rate"),
        (_accuracy(dim=0), "the argmax ran over the sentences (dim 0)"),
        (_threshold_accuracy, "a rule for two labels only"),
    ],
    "align_word_labels": [
        (lambda w, l: _align(w, l, special=0), "the special tokens (word id None) must get −100"),
        (lambda w, l: [-100 if word is None else l[word] for word in w], "every piece of a word carries its label"),
        (lambda w, l: _align(w, l, last_piece=True), "the tag goes on each word's first piece"),
        (lambda w, l: _align(w, l)[:-1], "gave 8 labels for 9 tokens"),
        (lambda w, l: {"labels": _align(w, l)}, "returned a dict; expected a list"),
    ],
    "entity_f1": [
        (lambda t, p: _f1(t, p, measure="precision"), "that is the precision (0.4000)"),
        (lambda t, p: _f1(t, p, measure="recall"), "that is the recall (0.5000)"),
        (lambda t, p: _f1(t, p, boundaries=False), "it must match in type, start and end"),
        (lambda t, p: _f1(t, p, strict=True), "an I-X after O or after another type starts a new X entity"),
        (lambda t, p: _f1(t, p) if any(x != "O" for s in p for x in s) else 1.0, "expected 0.0000"),
        (lambda t, p: f"{_f1(t, p):.2f}", "expected a number"),
        (_f1, "your function raised ZeroDivisionError"),
    ],
    "word_shape_name": [
        (_shape(no_letters_first=False), "word_shape_name('1996') = 'lower', expected 'no letters'"),
        (_shape(upper_before_capitalized=False), "word_shape_name('EU') = 'Capitalized', expected 'UPPER'"),
        (_shape(title_rule=True), "word_shape_name('McDonald') = 'mixed', expected 'Capitalized'"),
        (_shape(letters_only=False), "word_shape_name('U.S.') = 'Capitalized', expected 'UPPER': only the letters"),
        (lambda word: word_shape(word), "returned 1; expected the shape's name"),
        (_shape(names=[s.lower() for s in SHAPES]), "'capitalized', which is not a shape"),
    ],
}


# --- right answers written by hand pass --------------------------------------------------------------------------


def test_answers_written_by_hand_pass() -> None:
    def classification_head(hidden, pooler_weight, pooler_bias, classifier_weight, classifier_bias):
        pooler = torch.nn.Linear(*pooler_weight.shape[::-1])
        classifier = torch.nn.Linear(*classifier_weight.shape[::-1])
        with torch.no_grad():
            pooler.weight.copy_(pooler_weight), pooler.bias.copy_(pooler_bias)
            classifier.weight.copy_(classifier_weight), classifier.bias.copy_(classifier_bias)
            return classifier(pooler(hidden[:, 0]).tanh())

    def align_word_labels(word_ids, word_labels):
        seen, labels = set(), []
        for word in word_ids:
            labels.append(-100 if word is None or word in seen else word_labels[word])
            if word is not None:
                seen.add(word)
        return labels

    def entity_f1(true_tags, predicted_tags):
        true, predicted = ({(n, *s) for n, tags in enumerate(t) for s in _spans(tags)}
                           for t in (true_tags, predicted_tags))
        right = len(true & predicted)
        return 0.0 if right == 0 else 2 * right / (len(true) + len(predicted))

    def sentence_accuracy(logits, labels):
        return sum(int(row.argmax()) == int(label) for row, label in zip(logits, labels)) / len(labels)

    answers = {"classification_head": classification_head, "align_word_labels": align_word_labels,
               "entity_f1": entity_f1, "sentence_accuracy": sentence_accuracy,
               "fine_tuning_step": _step(zero_grad="start"),  # zeroing first, as labkit's loops do, is as right
               "word_shape_name": _shape()}
    for name, answer in answers.items():
        result = check(name, answer, quiet=True)
        assert result, result.message


def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, reference in (("classification_head", reference_classification_head),
                            ("fine_tuning_step", reference_fine_tuning_step)):
        assert check(name, reference, quiet=True)
    assert torch.equal(torch.rand(3), expected)


# --- the references agree with Hugging Face and labkit -----------------------------------------------------------


def _tiny_bert(kind: str):
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = (BertForSequenceClassification if kind == "sentence" else BertForTokenClassification)(config)
    return model.eval()


def _bert_batch(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    mask = (torch.arange(7)[None] < torch.tensor([7, 5, 4])[:, None]).long()
    batch = {"input_ids": torch.randint(5, 40, (3, 7), generator=g) * mask, "attention_mask": mask,
             "token_type_ids": torch.zeros(3, 7, dtype=torch.long)}
    if kind == "sentence":
        return batch | {"labels": torch.tensor([0, 2, 1])}
    labels = torch.randint(0, 3, (3, 7), generator=g).masked_fill(mask == 0, -100)
    labels[:, 0] = -100
    return batch | {"labels": labels}


def test_the_head_is_bert_for_sequence_classification() -> None:
    model, batch = _tiny_bert("sentence"), _bert_batch("sentence")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        hidden = model.bert(**inputs).last_hidden_state
        ours = reference_classification_head(hidden, model.bert.pooler.dense.weight, model.bert.pooler.dense.bias,
                                             model.classifier.weight, model.classifier.bias)
        assert torch.allclose(ours, model(**inputs).logits, atol=1e-6)


@pytest.mark.parametrize("kind", ["sentence", "token"])
def test_the_step_descends_hugging_faces_own_loss(kind: str) -> None:
    ours, theirs, batch = _tiny_bert(kind), _tiny_bert(kind), _bert_batch(kind)
    ours.train(), theirs.train()
    with torch.random.fork_rng():
        torch.manual_seed(7)
        loss = reference_fine_tuning_step(ours, batch, torch.optim.SGD(ours.parameters(), lr=0.5), max_norm=0.3)
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.5)
    with torch.random.fork_rng():  # the same dropout masks
        torch.manual_seed(7)
        their_loss = theirs(**batch).loss  # Hugging Face's cross-entropy, −100 left out
    their_loss.backward()
    torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.3)
    optimizer.step()
    assert math.isclose(loss, their_loss.item(), rel_tol=1e-6)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
        assert a.grad is None or not a.grad.any(), f"{name}: the step leaves its gradients zeroed"


def test_the_accuracy_and_the_shapes_are_labkits() -> None:
    logits, labels = torch.randn(20, 4, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 4
    assert reference_sentence_accuracy(logits, labels) == accuracy(logits, labels)
    assert math.isclose(reference_sentence_accuracy(logits, labels),
                        (logits.argmax(-1) == labels).float().mean().item())
    for word in ("Apple", "apple", "EU", "iPhone", "1996", "McDonald", "U.S."):
        assert reference_word_shape_name(word) == SHAPES[word_shape(word)] == _shape()(word)


@pytest.mark.parametrize("true, predicted", [
    ([["B-PER", "I-PER", "O", "B-LOC"], ["B-MISC", "O"]], [["B-PER", "I-PER", "O", "B-ORG"], ["B-MISC", "B-PER"]]),
    ([["O", "I-LOC", "I-LOC", "B-PER", "I-LOC", "I-PER"]], [["B-LOC", "I-LOC", "O", "I-PER", "I-PER", "B-PER"]]),
    ([["B-ORG", "I-ORG", "B-ORG", "O"]], [["B-ORG", "I-ORG", "I-ORG", "O"]]),
])
def test_the_span_reading_agrees_with_seqeval(true, predicted) -> None:
    ours, theirs = _scores(true, predicted), entity_scores(true, predicted)["overall"]
    assert ours["precision"] == pytest.approx(theirs["precision"]) and ours["recall"] == pytest.approx(theirs["recall"])
    assert ours["f1"] == pytest.approx(theirs["f1"])
