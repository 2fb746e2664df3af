"""Notebook 06's exercises, each checked where its idea is taught: the classification head on [CLS], one
fine-tuning step, sentence accuracy, word labels aligned to word pieces, entity-level F1 from IOB2 tags, and the
shape of a word.

`fine_tuning_step` is checked on a tiny stand-in for a Hugging Face classifier that the checker builds in a random
state of its own (the notebook's is left as it was) and steps with plain SGD, so that each mistake in the step
(old gradients kept, no clipping, a clipped value instead of the norm) moves the weights its own way.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded, seeded_randn
from labkit.finetune_data import align_labels
from labkit.finetune_metrics import accuracy, entity_scores
from labkit.modules import IGNORE_INDEX
from labkit.word_shape import SHAPES, word_shape


# --- the classification head -------------------------------------------------------------------------------------

def reference_classification_head(hidden: Tensor, pooler_weight: Tensor, pooler_bias: Tensor,
                                  classifier_weight: Tensor, classifier_bias: Tensor) -> Tensor:
    pooled = torch.tanh(hidden[:, 0] @ pooler_weight.T + pooler_bias)  # (batch, d), from the [CLS] vector
    return pooled @ classifier_weight.T + classifier_bias  # (batch, n_labels)


@exercise("classification_head", "06",
          task="classification_head(hidden, pooler_weight, pooler_bias, classifier_weight, classifier_bias): hidden "
               "(batch, seq, d) → logits (batch, n_labels): the [CLS] vector (position 0) through the pooler (a "
               "dense layer d → d, then tanh), then through the classifier (d → n_labels); the weights are stored "
               "(out, in), as in nn.Linear",
          hint="cls = hidden[:, 0]; pooled = torch.tanh(cls @ pooler_weight.T + pooler_bias); return pooled @ "
               "classifier_weight.T + classifier_bias (the logits: no softmax)",
          reference=reference_classification_head)
def check_classification_head(answer: Callable[..., Any]) -> None:
    hidden = 2 * seeded_randn(2, 5, 6, seed=1)
    wp, bp = seeded_randn(6, 6, seed=2) / 2, seeded_randn(6, seed=3) / 2
    wc, bc = seeded_randn(3, 6, seed=4), seeded_randn(3, seed=5)
    what = "classification_head(hidden of shape (2, 5, 6), pooler (6, 6), classifier (3, 6))"
    out = answer(hidden.clone(), wp.clone(), bp.clone(), wc.clone(), bc.clone())
    expect(not (isinstance(out, Tensor) and tuple(out.shape) == (2, 5, 3)),
           f"{what} has shape (2, 5, 3): you scored every token; a sentence head reads position 0, [CLS], only")
    out = expect_tensor(out, (2, 3), what)

    def head(cls: Tensor, activation: Callable[[Tensor], Tensor] = torch.tanh, weight: Tensor = wp) -> Tensor:
        return activation(cls @ weight.T + bp) @ wc.T + bc

    expected = head(hidden[:, 0])
    mistakes = (
        (head(hidden.mean(1)), "you averaged every token's vector; this head reads the [CLS] vector alone, "
                               "hidden[:, 0]"),
        (head(hidden[:, -1]), "you read the last position; [CLS] is the first one, hidden[:, 0]"),
        (expected.softmax(-1), "those are probabilities (each row sums to 1); return the logits, before any "
                               "softmax: the cross-entropy applies it itself"),
        (hidden[:, 0] @ wc.T + bc, "the pooler is skipped: the [CLS] vector goes through the dense layer and tanh "
                                   "before the classifier"),
        (head(hidden[:, 0], activation=lambda x: x), "no tanh after the pooler's dense layer"),
        (head(hidden[:, 0], activation=torch.relu), "ReLU after the pooler's dense layer; BERT's pooler uses tanh"),
        (head(hidden[:, 0], activation=F.gelu), "GELU after the pooler's dense layer; BERT's pooler uses tanh (GELU "
                                                "is the encoder's feed-forward activation)"),
        (head(hidden[:, 0], weight=wp.T), "pooler_weight is used untransposed: a weight stored (out, in) maps x to "
                                          "x @ W.T + b"),
        (torch.tanh(head(hidden[:, 0], activation=lambda x: x)), "tanh on the logits; it goes between the pooler's "
                                                                 "dense layer and the classifier"),
        (torch.tanh(hidden[:, 0] @ wp.T) @ wc.T, "the biases are left out: add pooler_bias and classifier_bias"),
    )
    for wrong, message in mistakes:
        expect(not same(out, wrong), message)
    expect(same(out, expected), f"differs from classifier(tanh(pooler(hidden[:, 0]))) by up to "
                                f"{max_difference(out, expected):.2g}")


# --- one fine-tuning step ----------------------------------------------------------------------------------------

def reference_fine_tuning_step(model: nn.Module, batch: dict[str, Tensor], optimizer: torch.optim.Optimizer,
                               max_norm: float = 1.0) -> float:
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits  # (batch, n_labels), or (batch, seq, n_labels) for a tagger
    loss = F.cross_entropy(logits.flatten(0, -2), batch["labels"].flatten(), ignore_index=IGNORE_INDEX)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


class _TinyClassifier(nn.Module):
    """A stand-in for a Hugging Face classifier: each token's embedding plus the masked mean of the sentence's, then
    logits for the sentence (its first position) or for every token. It computes no loss."""

    def __init__(self, per_token: bool) -> None:
        super().__init__()
        self.per_token = per_token
        self.embed = nn.Embedding(11, 8)
        self.mix = nn.Linear(8, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                **unexpected: Any) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

        if "labels" in unexpected:
            raise Failed("the labels went into the model: leave them out of its inputs and compute "
                         "F.cross_entropy(logits, labels) from its logits yourself")
        if unexpected:
            raise TypeError(f"the model takes input_ids, attention_mask and token_type_ids, got {sorted(unexpected)}")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        x = self.embed(input_ids)  # (batch, seq, 8)
        context = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # the mean over the real tokens
        hidden = torch.tanh(self.mix(x + context[:, None]))
        if self.per_token:
            return TokenClassifierOutput(logits=self.classifier(hidden))  # (batch, seq, 3)
        return SequenceClassifierOutput(logits=self.classifier(hidden[:, 0]))  # (batch, 3)


def _step_batches(per_token: bool) -> list[dict[str, Tensor]]:
    """Two padded batches of four rows (lengths 6, 4, 5, 3): sentence labels (4,) or token labels (4, 6) with −100 on
    [CLS], on a later piece of a word and on the padding."""
    batches = []
    for seed in (10, 11):
        generator = torch.Generator().manual_seed(seed)
        mask = (torch.arange(6)[None] < torch.tensor([6, 4, 5, 3])[:, None]).long()
        input_ids = torch.randint(1, 11, (4, 6), generator=generator) * mask
        if per_token:
            labels = torch.randint(0, 3, (4, 6), generator=generator).masked_fill(mask == 0, IGNORE_INDEX)
            labels[:, 0] = labels[1, 2] = IGNORE_INDEX
        else:
            labels = torch.randint(0, 3, (4,), generator=generator)
        batches.append({"input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids),
                        "attention_mask": mask, "labels": labels})
    return batches


def _tiny_step_model(per_token: bool) -> nn.Module:
    with seeded(0):
        model = _TinyClassifier(per_token)
    with torch.no_grad():  # large enough weights that the gradient's norm is well above the checker's max_norm
        for p in model.parameters():
            p.mul_(3)
    return model


def _loss(model: nn.Module, batch: dict[str, Tensor], *, mask: bool = True, softmax: bool = False,
          count_ignored: bool = False) -> Tensor:
    """The step's loss, and the mistakes a learner could make in it."""
    inputs = {k: v for k, v in batch.items() if k != "labels" and (mask or k != "attention_mask")}
    logits = model(**inputs).logits.flatten(0, -2)
    labels = batch["labels"].flatten()
    if count_ignored:
        labels = labels.clamp(min=0)
    return F.cross_entropy(logits.softmax(-1) if softmax else logits, labels)


def _trajectory(per_token: bool, max_norm: float, *, zero_grad: bool = True, clip: str = "norm") -> list[Tensor]:
    """The weights (flattened) after each of the two steps, for the reference step or one mistake in it."""
    model = _tiny_step_model(per_token)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    states = []
    for batch in _step_batches(per_token):
        _loss(model, batch).backward()
        if clip == "norm":
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        elif clip == "norm 1":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        elif clip == "value":
            torch.nn.utils.clip_grad_value_(model.parameters(), max_norm)
        optimizer.step()
        if zero_grad:
            optimizer.zero_grad()
        states.append(_weights(model))
    return states


def _weights(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


@exercise("fine_tuning_step", "06",
          task="fine_tuning_step(model, batch, optimizer, max_norm=1.0) → the batch's loss (a float): run the model "
               "on every input in batch but labels, take the cross-entropy of its logits against batch['labels'] "
               "(logits (batch, n_labels) or (batch, seq, n_labels); labels −100 left out), backward, clip the "
               "gradients' total norm to max_norm, step the optimizer, zero the gradients",
          hint="inputs = {k: v for k, v in batch.items() if k != 'labels'}; logits = model(**inputs).logits; loss = "
               "F.cross_entropy(logits.flatten(0, -2), batch['labels'].flatten()); loss.backward(); "
               "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm); optimizer.step(); "
               "optimizer.zero_grad(); return loss.item()",
          reference=reference_fine_tuning_step)
def check_fine_tuning_step(answer: Callable[..., Any]) -> None:
    max_norm = 0.1
    for per_token, what in ((False, "a sentence batch (logits (4, 3), labels (4,))"),
                            (True, "a token batch (logits (4, 6, 3), labels (4, 6) with −100)")):
        model = _tiny_step_model(per_token)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        expected_states = _trajectory(per_token, max_norm)
        for n, batch in enumerate(_step_batches(per_token)):
            before = _weights(model)
            with torch.no_grad():
                expected = _loss(model, batch).item()
                wrong_losses = (
                    (_loss(model, batch, softmax=True).item(),
                     "that is the cross-entropy of softmax(logits): F.cross_entropy takes the raw logits"),
                    (_loss(model, batch, mask=False).item(),
                     "that is the loss without the attention mask: pass every input but the labels to the model"),
                )
                if per_token:
                    wrong_losses += ((_loss(model, batch, count_ignored=True).item(),
                                      "the −100 positions count in the loss; F.cross_entropy leaves them out by "
                                      "itself (ignore_index=−100)"),)
            try:
                loss = answer(model, {k: v.clone() for k, v in batch.items()}, optimizer, max_norm)
            except (RuntimeError, ValueError) as err:
                if not per_token:
                    raise
                raise Failed(f"on {what} your function raised {type(err).__name__}: {err}. A tagger's logits are "
                             f"(batch, seq, n_labels): flatten them to (batch·seq, n_labels), and the labels to "
                             f"(batch·seq,), before F.cross_entropy") from None
            expect(not isinstance(loss, Tensor), f"on {what} it returned a tensor; return the loss as a float, "
                                                 f"loss.item() (a tensor keeps the whole graph alive)")
            expect(isinstance(loss, numbers.Real) and not isinstance(loss, bool),
                   f"on {what} it returned {loss!r}; expected the loss, a float")
            if not math.isclose(loss, expected, rel_tol=1e-4):
                for wrong, message in wrong_losses:
                    expect(not math.isclose(loss, wrong, rel_tol=1e-4), f"loss {loss:.4f} on {what}: {message}")
                with torch.no_grad():
                    after = _loss(model, batch).item()
                expect(not math.isclose(loss, after, rel_tol=1e-4),
                       f"loss {loss:.4f} on {what} is the loss after the step; return the loss the gradients came "
                       f"from, computed before the step ({expected:.4f})")
                raise Failed(f"loss {loss:.4f} on {what}, expected the mean cross-entropy {expected:.4f}")
            weights = _weights(model)
            expect(not torch.equal(weights, before),
                   f"the weights did not change on {what}: call optimizer.step() after loss.backward(), and zero "
                   f"the gradients before backward or after the step, not between them")
            if not same(weights, expected_states[n], 1e-6):
                for mistake, message in (
                        (dict(zero_grad=False), "the gradients of the previous batch are still there: zero them "
                                                "each step (optimizer.zero_grad())"),
                        (dict(clip="none"), "the step used gradients that were not clipped: call "
                                            "clip_grad_norm_(model.parameters(), max_norm) between backward and step"),
                        (dict(clip="norm 1"), f"the gradients were clipped to norm 1.0; clip to max_norm = {max_norm}"),
                        (dict(clip="value"), "each gradient value was clipped (clip_grad_value_); clip their total "
                                             "norm, clip_grad_norm_")):
                    expect(not same(weights, _trajectory(per_token, max_norm, **mistake)[n], 1e-6), message)
                raise Failed(f"after step {n + 1} on {what} the weights differ from the reference step's by up to "
                             f"{max_difference(weights, expected_states[n]):.2g}")


# --- sentence accuracy -------------------------------------------------------------------------------------------

def reference_sentence_accuracy(logits: Tensor, labels: Tensor) -> float:
    return accuracy(logits, labels)


@exercise("sentence_accuracy", "06",
          task="sentence_accuracy(logits, labels): logits (n, n_labels), labels (n,) → the fraction of sentences "
               "whose highest-scoring label is the true one, a float in [0, 1]",
          hint="predicted = logits.argmax(dim=-1), one label per sentence; return (predicted == labels).float()"
               ".mean().item()",
          reference=reference_sentence_accuracy)
def check_sentence_accuracy(answer: Callable[[Tensor, Tensor], Any]) -> None:
    cases = (
        ("4 sentences, 4 labels", torch.tensor([[2.0, 0.9, -1.3, 1.8], [3.3, -1.1, 1.1, -1.0],
                                                [-1.6, 0.5, 0.1, -1.5], [-1.4, 0.6, 1.4, 0.8]]),
         torch.tensor([0, 2, 1, 2])),
        ("6 sentences, 2 labels", seeded_randn(6, 2, seed=6), torch.tensor([1, 0, 0, 1, 1, 0])),
        ("5 sentences, 3 labels", torch.tensor([[0.1, 0.2, 0.3], [1.0, 0.0, 0.0], [0.0, 0.4, 0.1],
                                                [0.2, 0.1, 0.3], [0.5, 0.0, 0.6]]), torch.tensor([2, 0, 1, 1, 0])),
    )
    for name, logits, labels in cases:
        value = answer(logits.clone(), labels.clone())
        expect(not isinstance(value, Tensor), f"on {name} it returned a tensor; return a float (.item())")
        expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
               f"on {name} it returned {value!r}; expected a number")
        expected = reference_sentence_accuracy(logits, labels)
        right = round(expected * len(labels))
        if math.isclose(value, expected, abs_tol=1e-6):
            continue
        expect(not (value == right and right > 1),
               f"{value} on {name} is the number right; divide by the number of sentences, {len(labels)}")
        expect(not math.isclose(value, 1 - expected, abs_tol=1e-6),
               f"{value:.4f} on {name} is the error rate; accuracy is the share right, 1 − that")
        if logits.shape[0] == logits.shape[1]:
            by_column = (logits.argmax(0) == labels).float().mean().item()
            expect(not math.isclose(value, by_column, abs_tol=1e-6),
                   f"{value:.4f} on {name}: the argmax ran over the sentences (dim 0); take it over the labels, "
                   f"dim −1")
        threshold = ((logits.softmax(-1)[:, 1] > 0.5).long() == labels).float().mean().item()
        expect(not math.isclose(value, threshold, abs_tol=1e-6),
               f"{value:.4f} on {name}: label 1's probability above 0.5 is a rule for two labels only; the "
               f"prediction is the label with the highest score, the argmax")
        raise Failed(f"{value:.4f} on {name}, expected {expected:.4f}")


# --- word labels for word pieces ---------------------------------------------------------------------------------

def reference_align_word_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    return align_labels(word_ids, word_labels)


@exercise("align_word_labels", "06",
          task="align_word_labels(word_ids, word_labels) → one label per token: the first piece of each word gets "
               "the word's label; later pieces of the same word and special tokens (word id None) get −100",
          hint="walk through word_ids remembering the previous one: None or the same word as before → −100, "
               "otherwise word_labels[word]",
          reference=reference_align_word_labels)
def check_align_word_labels(answer: Callable[[Sequence[int | None], Sequence[int]], Any]) -> None:
    cases = (([None, 0, 1, 1, 1, 2, 3, 3, None], [3, 0, 1, 2]),  # [CLS] w0 w1 ##w1 ##w1 w2 w3 ##w3 [SEP]
             ([None, 0, 0, 1, None, None], [5, 6]))  # ... [SEP] [PAD]
    for word_ids, word_labels in cases:
        what = f"align_word_labels({word_ids}, {word_labels})"
        result = answer(list(word_ids), list(word_labels))
        expect(isinstance(result, (list, tuple)), f"{what} returned a {type(result).__name__}; expected a list")
        got = [int(label) for label in result]
        expected = reference_align_word_labels(word_ids, word_labels)
        expect(len(got) == len(word_ids), f"{what} gave {len(got)} labels for {len(word_ids)} tokens; "
                                          f"expected one per token")
        specials = [i for i, w in enumerate(word_ids) if w is None]
        expect(all(got[i] == IGNORE_INDEX for i in specials),
               f"{what} = {got}: the special tokens (word id None) must get −100, so the loss skips them")
        every_piece = [IGNORE_INDEX if w is None else word_labels[w] for w in word_ids]
        expect(got != every_piece, f"{what} = {got}: every piece of a word carries its label; only the first "
                                   f"piece does, the later ones get −100")
        expect(got == expected, f"{what} = {got}, expected {expected}: the tag goes on each word's first piece")


# --- entity-level F1 ---------------------------------------------------------------------------------------------

def _entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first, last) entities of one IOB2 tag sequence, read as conlleval does: an entity starts at B-X,
    or at an I-X that does not continue an X entity, and runs while I-X follows."""
    found, current = set(), None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and current is not None and current[0] == kind
        if current is not None and not continues:
            found.add((current[0], current[1], i - 1))
            current = None
        if prefix in ("B", "I") and not continues:
            current = (kind, i)
    return found


def _scores(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 of the sentences together, and F1 with the boundaries ignored."""
    true = {(n, *e) for n, tags in enumerate(true_tags) for e in _entities(tags)}
    predicted = {(n, *e) for n, tags in enumerate(predicted_tags) for e in _entities(tags)}
    right = len(true & predicted)
    precision, recall = right / len(predicted) if predicted else 0.0, right / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if right else 0.0
    typed_true, typed_predicted = ({(n, kind) for n, kind, *_ in s} for s in (true, predicted))
    loose = 2 * len(typed_true & typed_predicted) / (len(typed_true) + len(typed_predicted))
    return {"precision": precision, "recall": recall, "f1": f1, "types only": loose}


def reference_entity_f1(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> float:
    return entity_scores(true_tags, predicted_tags)["overall"]["f1"]


@exercise("entity_f1", "06",
          task="entity_f1(true_tags, predicted_tags) → entity-level F1 over all sentences (lists of IOB2 tags): an "
               "entity counts as found only when its type and both boundaries match. An entity starts at B-X, or "
               "at an I-X that does not continue an X entity, and runs while I-X follows. F1 is 0 when nothing "
               "is right",
          hint="collect (sentence, type, start, end) spans from both tag lists; precision = right / predicted, "
               "recall = right / true, F1 = 2·P·R / (P + R), and 0 when no span is right (no division by zero)",
          reference=reference_entity_f1)
def check_entity_f1(answer: Callable[[Sequence[Sequence[str]], Sequence[Sequence[str]]], Any]) -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG", "O"], ["B-MISC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O", "O"], ["B-MISC", "B-PER"]]
    ill_formed_true = [["O", "I-LOC", "I-LOC", "O", "B-PER", "I-LOC"]]  # LOC 1–2, PER 4, LOC 5
    ill_formed_predicted = [["O", "B-LOC", "I-LOC", "O", "B-PER", "B-LOC"]]
    cases = {
        "the sentences": (true, predicted),
        "tags where an I- starts an entity": (ill_formed_true, ill_formed_predicted),
        "a prediction with no entities": (true, [["O"] * len(t) for t in true]),
    }
    for name, (t, p) in cases.items():
        value = answer([list(s) for s in t], [list(s) for s in p])
        expect(isinstance(value, numbers.Real), f"on {name}, entity_f1 returned {value!r}; expected a number")
        scores, expected = _scores(t, p), reference_entity_f1(t, p)
        wrong = {
            "precision": f"that is the precision ({scores['precision']:.4f}); F1 combines it with the recall",
            "recall": f"that is the recall ({scores['recall']:.4f}); F1 combines it with the precision",
            "types only": "an entity counted although its boundaries differ; it must match in type, start and end",
        }
        for key, message in wrong.items():
            expect(not (name == "the sentences" and math.isclose(value, scores[key], abs_tol=1e-6)),
                   f"entity_f1 = {value:.4f} on {name}: {message}")
        expect(math.isclose(value, expected, abs_tol=1e-6),
               f"entity_f1 = {value:.4f} on {name}, expected {expected:.4f}" +
               (": an I-X after O or after another type starts a new X entity" if name.startswith("tags") else ""))


# --- the shape of a word -----------------------------------------------------------------------------------------

def reference_word_shape_name(word: str) -> str:
    return SHAPES[word_shape(word)]


_WHY = {  # each test word, and why its shape is what it is
    "apple": "all its letters are lower-case",
    "Apple": "its first letter is a capital and not all of them are",
    "EU": "all its letters are capitals; test for that before 'Capitalized'",
    "I": "a lone capital letter is all capitals; test for that before 'Capitalized'",
    "McDonald": "its first letter is a capital, so it is 'Capitalized' even with a capital later; 'mixed' is a "
                "lower-case first letter with a capital later",
    "iPhone": "its first letter is lower-case and a later one is a capital",
    "eBay": "its first letter is lower-case and a later one is a capital",
    "1996": "it has no letters at all; test for that first (all() over no letters is True)",
    "--": "it has no letters at all; test for that first (all() over no letters is True)",
    "U.S.": "only the letters count: punctuation and digits have no case",
    "co-op": "only the letters count: punctuation and digits have no case",
    "3M": "only the letters count: punctuation and digits have no case",
    "O'Neill": "only the letters count, and its first letter is a capital while not all of them are",
}


@exercise("word_shape_name", "06",
          task="word_shape_name(word) → the word's shape, looking at its letters only: 'no letters' (1996), "
               "'lower' (apple: every letter lower-case), 'UPPER' (EU, U.S.: every letter a capital), 'Capitalized' "
               "(Apple, McDonald: the first letter a capital, not all of them), else 'mixed' (iPhone)",
          hint="letters = [c for c in word if c.isalpha()]; test in this order: no letters, all lower (c.islower()), "
               "all upper (c.isupper()), first letter upper → 'Capitalized', otherwise 'mixed'",
          reference=reference_word_shape_name)
def check_word_shape_name(answer: Callable[[str], Any]) -> None:
    for word, why in _WHY.items():
        got, expected = answer(word), reference_word_shape_name(word)
        expect(isinstance(got, str), f"word_shape_name({word!r}) returned {got!r}; expected the shape's name, a str "
                                     f"such as {expected!r}")
        expect(got in SHAPES[1:], f"word_shape_name({word!r}) = {got!r}, which is not a shape; the shapes are "
                                  f"{', '.join(map(repr, SHAPES[1:]))}")
        expect(got == expected, f"word_shape_name({word!r}) = {got!r}, expected {expected!r}: {why}")
