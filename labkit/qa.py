"""Extractive question answering: the answer is a span of the passage, found by a start and an end score per token.

- Data (SQuAD's columns: id, question, context, answers {text, answer_start}): `load_questions` reads SQuAD v1.1
  (`rajpurkar/squad`) when the hub answers; otherwise `questions_from_conll` builds a question set from
  CoNLL-2003's gold entities over its real sentences: one templated question per entity type that occurs in the
  sentence with one text only ("Which place is named in this sentence?"), the answer being the entity's span;
  train from eng.train, held out from eng.testa. It teaches the mechanics; it is not SQuAD.
- `encode_questions`: question and passage as one pair (truncating the passage only), the passage's tokens marked,
  each token's character offsets, and the answer's first and last token (`IGNORE_INDEX` when the cut removed it).
- `SpanQAModel`: a linear layer d → 2 on every hidden state of a pretrained encoder gives start and end logits
  (batch, seq); the loss is the mean of the two cross-entropies. It computes what `BertForQuestionAnswering` does.
- `decode_spans` / `best_span`: the best (start, end) with start ≤ end, at most `max_answer_len` tokens, both in the
  passage; `span_text` maps it back to the passage's characters.
- SQuAD's metrics: `normalize_answer` (lower case, no punctuation, no articles, single spaces), `exact_match`,
  `token_f1` (the harmonic mean of token precision and recall), `squad_scores` (each best over the gold answers).
- `train_span_qa` trains through `labkit.loop.run`; `evaluate_qa` scores held-out questions; `answer_question` one
  question about one passage.
"""

from __future__ import annotations

import itertools
import re
import string
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.finetune_data import _check_fast, _check_max_len, _check_text
from labkit.finetune_metrics import entity_spans
from labkit.loop import History, run
from labkit.modules import IGNORE_INDEX, eval_mode
from labkit.presets import TrainConfig
from labkit.validate import require_positive_int

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from transformers import PreTrainedTokenizerBase

__all__ = ["QUESTIONS", "MAX_ANSWER_LEN", "detokenize", "questions_from_conll", "load_questions", "encode_questions",
           "qa_collator", "SpanQAModel", "decode_spans", "best_span", "span_text", "normalize_answer", "exact_match",
           "token_f1", "squad_scores", "train_span_qa", "predict_answers", "evaluate_qa", "answer_question"]

# One question per CoNLL-2003 entity type; asked only where the sentence names one entity of that type.
QUESTIONS = {"PER": "Which person is named in this sentence?",
             "ORG": "Which organisation is named in this sentence?",
             "LOC": "Which place is named in this sentence?",
             "MISC": "Which other name (a nationality, an event, a title) is in this sentence?"}
MAX_ANSWER_LEN = 30  # the longest answer decoded, in tokens (as in BERT's SQuAD recipe)

_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", "%", ")", "]", "}", "'s", "'S", "n't", "N'T", "'re", "'ve", "'m",
                    "'ll", "'d"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}


# ---------------------------------------------------------------------------------------------- the question set


def detokenize(words: Sequence[str]) -> tuple[str, list[int]]:
    """CoNLL's words → (the sentence as text, each word's first character in it): no space before punctuation and
    clitics ("'s", "n't"), none after an opening bracket or "$", and '"' alternately opening and closing."""
    text, starts, glue_next, quote_open = "", [], True, False
    for word in words:
        opening_quote = word == '"' and not quote_open
        closing_quote = word == '"' and quote_open
        if text and not glue_next and word not in _NO_SPACE_BEFORE and not closing_quote:
            text += " "
        starts.append(len(text))
        text += word
        glue_next = word in _NO_SPACE_AFTER or opening_quote
        quote_open = opening_quote or (quote_open and not closing_quote)
    return text, starts


def _entities(words: Sequence[str], tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, one past the last word) of each entity the IOB2 tags mark (read by `entity_spans`)."""
    found, position = [], 0
    for text, kind in entity_spans(list(zip(words, tags))):
        n_words = text.count(" ") + 1  # CoNLL's words hold no spaces
        if kind is not None:
            found.append((kind, position, position + n_words))
        position += n_words
    return found


def _conll_split_questions(split: Dataset, split_name: str, min_words: int) -> dict[str, list]:
    names = split.features["ner_tags"].feature.names
    columns: dict[str, list] = {"id": [], "question": [], "context": [], "answers": []}
    for row in split:
        words = row["tokens"]
        if len(words) < min_words:
            continue
        context, starts = detokenize(words)
        by_type: dict[str, list[tuple[int, int]]] = {}
        for kind, first, stop in _entities(words, [names[t] for t in row["ner_tags"]]):
            char_start = starts[first]
            char_end = starts[stop - 1] + len(words[stop - 1])
            by_type.setdefault(kind, []).append((char_start, char_end))
        for kind, spans in by_type.items():
            texts = {context[a:b] for a, b in spans}
            if kind not in QUESTIONS or len(texts) != 1:  # two different people: "which person?" has two answers
                continue
            columns["id"].append(f"conll2003-{split_name}-{row['id']}-{kind}")
            columns["question"].append(QUESTIONS[kind])
            columns["context"].append(context)
            columns["answers"].append({"text": [context[a:b] for a, b in spans],
                                       "answer_start": [a for a, _ in spans]})
    return columns


def questions_from_conll(conll: DatasetDict, min_words: int = 6) -> DatasetDict:
    """A question set in SQuAD's columns from CoNLL-2003 (`load_data("conll2003")`): "train" from its train split,
    "validation" (held out) from its validation split (eng.testa).

    For each sentence of at least `min_words` words (shorter lines are mostly datelines such as "LONDON 1996-08-30"),
    and each entity type it names with a single text (possibly more than once, each occurrence a gold answer), one
    question from `QUESTIONS`; the passage is the sentence detokenized. Deterministic: sentences in file order.
    """
    from datasets import Dataset, DatasetDict, Features, List, Value

    require_positive_int("min_words", min_words)
    if not all(split in conll for split in ("train", "validation")):
        raise ValueError(f"conll must be load_data('conll2003') with splits train and validation, got {list(conll)}")
    features = Features({"id": Value("string"), "question": Value("string"), "context": Value("string"),
                         "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))}})
    return DatasetDict({split: Dataset.from_dict(_conll_split_questions(conll[split], split, min_words),
                                                 features=features) for split in ("train", "validation")})


def load_questions(conll: DatasetDict | None = None) -> tuple[DatasetDict, str]:
    """(questions with splits train and validation in SQuAD's columns, the set's name): SQuAD v1.1 when the hub
    answers (`labkit.data.load_from_hub`), else, within seconds, `questions_from_conll(conll)` (conll read with
    `load_data` when None). Prints which, and that the CoNLL set is not SQuAD."""
    from labkit.data import load_data, load_from_hub

    try:
        return load_from_hub("squad"), "SQuAD v1.1"
    except FileNotFoundError as why:
        print(f"labkit.qa: no SQuAD ({why}); using questions built from CoNLL-2003's gold entities instead: one "
              "templated question per entity type, the entity's span as the answer. They teach the mechanics of "
              "extractive QA; they are not SQuAD.")
    return questions_from_conll(load_data("conll2003") if conll is None else conll), "CoNLL-2003 entity questions"


# ---------------------------------------------------------------------------------------------- encoding


def _answer_tokens(offsets: Sequence[Sequence[int]], passage: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """The first and last passage token overlapping characters [start, end); IGNORE_INDEX twice when the cut passage
    does not hold the whole answer."""
    inside = [i for i, (a, b) in enumerate(offsets) if passage[i] and a < end and b > start]
    last_char = max((b for i, (_, b) in enumerate(offsets) if passage[i]), default=0)
    if not inside or end > last_char:
        return IGNORE_INDEX, IGNORE_INDEX
    return inside[0], inside[-1]


def encode_questions(tokenizer: PreTrainedTokenizerBase, rows: Dataset, max_len: int) -> Dataset:
    """Encode question + passage pairs (SQuAD's columns) into a Dataset, one row per question, in order.

    Columns: input_ids, attention_mask (and token_type_ids: 0 question, 1 passage), passage_mask (1 on the passage's
    tokens, 0 on the question's, the special tokens and padding), offset_mapping ((start, end) characters of each
    token in its own text), start_positions and end_positions (the first gold answer's first and last token). The
    passage is cut to fit max_len; an answer the cut removed gets IGNORE_INDEX positions, with one warning counting
    them (training leaves them out; evaluation can only miss them).
    """
    from datasets import Dataset, Features, List, Value

    _check_fast(tokenizer)
    _check_max_len(tokenizer, max_len)
    missing = {"question", "context", "answers"} - set(rows.column_names)
    if missing or len(rows) == 0:
        raise ValueError(f"rows must be questions with SQuAD's columns question, context and answers; got "
                         f"{len(rows)} rows, missing {sorted(missing)}")
    for i, row in enumerate(rows):
        _check_text(f"rows[{i}]['question']", row["question"])
        _check_text(f"rows[{i}]['context']", row["context"])
        if not row["answers"]["text"]:
            raise ValueError(f"rows[{i}] has no answer; extractive QA as in SQuAD v1.1 needs one per question")
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        if row["context"][start:start + len(text)] != text:
            raise ValueError(f"rows[{i}]: the answer {text!r} is not at character {start} of its context; expected "
                             f"answer_start to point at the answer's text")
    question_lengths = [len(ids) for ids in tokenizer(list(rows["question"]), add_special_tokens=False)["input_ids"]]
    room = max_len - tokenizer.num_special_tokens_to_add(pair=True)
    longest = max(range(len(rows)), key=question_lengths.__getitem__, default=None)
    if longest is not None and question_lengths[longest] >= room:
        raise ValueError(f"max_len={max_len} leaves no room for the passage of rows[{longest}], whose question alone "
                         f"takes {question_lengths[longest]} tokens; expected a max_len above "
                         f"{question_lengths[longest] + max_len - room}")
    encoded = tokenizer(list(rows["question"]), list(rows["context"]), truncation="only_second", max_length=max_len,
                        return_offsets_mapping=True)
    columns = {key: encoded[key] for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoded}
    columns |= {"passage_mask": [], "offset_mapping": encoded["offset_mapping"], "start_positions": [],
                "end_positions": []}
    for i, answers in enumerate(rows["answers"]):
        passage = [int(s == 1) for s in encoded.sequence_ids(i)]
        start = answers["answer_start"][0]
        first, last = _answer_tokens(encoded["offset_mapping"][i], passage, start, start + len(answers["text"][0]))
        columns["passage_mask"].append(passage)
        columns["start_positions"].append(first)
        columns["end_positions"].append(last)
    cut = sum(1 for p in columns["start_positions"] if p == IGNORE_INDEX)
    if cut:
        warnings.warn(f"{cut} of {len(rows)} answers lie past max_len={max_len} tokens and were cut off: training "
                      f"leaves them out, and a model can only miss them", stacklevel=2)
    per_token = List(Value("int64"))
    features = Features({key: per_token for key in columns if key.endswith(("_ids", "_mask"))}
                        | {"offset_mapping": List(per_token), "start_positions": Value("int64"),
                           "end_positions": Value("int64")})
    return Dataset.from_dict(columns, features=features)


def qa_collator(tokenizer: PreTrainedTokenizerBase) -> Any:
    """Rows of `encode_questions` → a batch of tensors: the model's inputs padded by the tokenizer (batch, seq),
    passage_mask padded with 0 on the same side, start_positions and end_positions (batch,). offset_mapping stays
    out (it is read per row, on the CPU)."""
    def collate(rows: list[dict]) -> dict[str, Tensor]:
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in rows[0]]
        batch = dict(tokenizer.pad([{k: row[k] for k in keys} for row in rows], return_tensors="pt"))
        if "passage_mask" in rows[0]:
            mask = torch.zeros_like(batch["input_ids"])
            for i, row in enumerate(rows):
                n = len(row["passage_mask"])
                where = slice(mask.shape[1] - n, None) if tokenizer.padding_side == "left" else slice(0, n)
                mask[i, where] = torch.as_tensor(row["passage_mask"])
            batch["passage_mask"] = mask
        for key in ("start_positions", "end_positions"):
            if key in rows[0]:
                batch[key] = torch.tensor([int(row[key]) for row in rows])
        return batch

    return collate


def _loader(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int,
            shuffle_seed: int | None = None) -> Any:
    from torch.utils.data import DataLoader

    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle_seed is not None, generator=generator,
                      collate_fn=qa_collator(tokenizer))


# ---------------------------------------------------------------------------------------------- the span head


class SpanQAModel(nn.Module):
    """A pretrained encoder with a span head: nn.Linear(hidden, 2) on every hidden state → start_logits and
    end_logits, each (batch, seq). What `BertForQuestionAnswering` computes, its `qa_outputs` here `span_head`.

    encoder: a Hugging Face base model (`labkit.assets.load_model(task="base")`) whose output has
    `last_hidden_state` (batch, seq, hidden).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        hidden = getattr(getattr(encoder, "config", None), "hidden_size", None)
        if not isinstance(hidden, int):
            raise TypeError(f"encoder must be a Hugging Face model with config.hidden_size, got "
                            f"{type(encoder).__name__}")
        self.encoder = encoder
        self.span_head = nn.Linear(hidden, 2)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                start_positions: Tensor | None = None, end_positions: Tensor | None = None) -> Any:
        """input_ids, attention_mask, token_type_ids: (batch, seq); start_positions, end_positions: (batch,).

        Returns Hugging Face's `QuestionAnsweringModelOutput`: start_logits and end_logits (batch, seq), and with the
        positions `.loss`, the mean of the start and the end cross-entropy (IGNORE_INDEX rows left out).
        """
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        start_logits, end_logits = self.span_head(hidden).unbind(-1)  # (batch, seq) each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = (F.cross_entropy(start_logits, start_positions) + F.cross_entropy(end_logits, end_positions)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


# ---------------------------------------------------------------------------------------------- span decoding


def decode_spans(start_logits: Tensor, end_logits: Tensor, passage_mask: Tensor,
                 max_answer_len: int = MAX_ANSWER_LEN) -> Tensor:
    """The best span of each row: (batch, 2) of (start, end) token positions maximising start_logits[start] +
    end_logits[end] with start ≤ end < start + max_answer_len, both where passage_mask is true.

    start_logits, end_logits, passage_mask: (batch, seq). Among equal scores the lowest start, then the lowest end.
    """
    require_positive_int("max_answer_len", max_answer_len)
    if not (start_logits.shape == end_logits.shape == passage_mask.shape and start_logits.dim() == 2):
        raise ValueError(f"start_logits, end_logits and passage_mask must all be (batch, seq), got "
                         f"{tuple(start_logits.shape)}, {tuple(end_logits.shape)}, {tuple(passage_mask.shape)}")
    passage = passage_mask.bool()
    if not passage.any(-1).all():
        raise ValueError("passage_mask has a row with no passage token: there is no span to decode")
    seq = start_logits.shape[-1]
    offset = torch.arange(seq, device=start_logits.device)
    length = offset[None, :] - offset[:, None]  # (seq, seq): end - start
    allowed = (length >= 0) & (length < max_answer_len)
    allowed = allowed & passage[:, :, None] & passage[:, None, :]  # (batch, start, end)
    scores = start_logits.float()[:, :, None] + end_logits.float()[:, None, :]
    best = scores.masked_fill(~allowed, float("-inf")).flatten(1).argmax(-1)  # (batch,)
    return torch.stack([best // seq, best % seq], dim=-1)


def best_span(start_logits: Tensor, end_logits: Tensor, passage_mask: Tensor,
              max_answer_len: int = MAX_ANSWER_LEN) -> tuple[int, int]:
    """`decode_spans` for one question: start_logits, end_logits, passage_mask (seq,) → (start, end)."""
    start, end = decode_spans(start_logits[None], end_logits[None], passage_mask[None], max_answer_len)[0].tolist()
    return start, end


def span_text(context: str, offsets: Sequence[Sequence[int]], start: int, end: int) -> str:
    """The passage's characters from token `start`'s first to token `end`'s last (offsets: (seq, 2))."""
    return context[offsets[start][0]:offsets[end][1]]


# ---------------------------------------------------------------------------------------------- SQuAD's metrics


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, the articles a / an / the removed, whitespace
    collapsed to single spaces ("The Eiffel  Tower!" → "eiffel tower")."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the two are equal after `normalize_answer`, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    """The F1 of the normalised answers' tokens: shared tokens counted with multiplicity (a Counter's intersection),
    precision = shared / predicted tokens, recall = shared / true tokens, F1 = 2PR / (P + R); 0.0 when none is
    shared (also when both are empty, as SQuAD v1.1's script has it)."""
    predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    shared = sum((Counter(predicted) & Counter(true)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(true)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], gold_answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"}: the means over the questions of each score's best over that question's gold answers,
    as fractions in [0, 1] (SQuAD reports them ×100)."""
    if isinstance(predictions, str) or len(predictions) != len(gold_answers) or not predictions:
        raise ValueError(f"predictions and gold_answers must be non-empty lists of the same length (one per "
                         f"question), got {len(predictions)} and {len(gold_answers)}")
    for i, golds in enumerate(gold_answers):
        if isinstance(golds, str) or not golds:
            raise ValueError(f"gold_answers[{i}] is {golds!r}; expected a non-empty list of answer texts")
    em = [max(exact_match(p, g) for g in golds) for p, golds in zip(predictions, gold_answers)]
    f1 = [max(token_f1(p, g) for g in golds) for p, golds in zip(predictions, gold_answers)]
    return {"exact_match": sum(em) / len(em), "f1": sum(f1) / len(f1)}


# ---------------------------------------------------------------------------------------------- train and score


def train_span_qa(model: nn.Module, encoded: Dataset, tokenizer: PreTrainedTokenizerBase, config: TrainConfig, *,
                  progress: bool = True) -> History:
    """Fine-tune `model` (a `SpanQAModel`, or any model whose output has `.loss` given start_positions and
    end_positions) on `encode_questions` rows through `labkit.loop.run`: batches of `config.batch_size` shuffled anew
    every epoch from `config.seed`, fused AdamW (the fine-tuning presets: warm-up, then linear decay to 0, bf16
    autocast where `bf16_is_fast`). Rows whose answer was cut off are left out. Returns the History."""
    if config.optimizer != "adamw":
        raise ValueError(f"the span head trains with fused AdamW; config.optimizer={config.optimizer!r} is for "
                         f"TinyGPT's blocks")
    kept = [i for i, position in enumerate(encoded["start_positions"]) if position != IGNORE_INDEX]
    if not kept:
        raise ValueError("encoded holds no question whose answer survived the cut: nothing to train on")
    rows = encoded.select(kept).remove_columns([c for c in ("passage_mask", "offset_mapping")
                                                if c in encoded.column_names])

    def endless() -> Any:
        for epoch in itertools.count():
            yield from _loader(rows, tokenizer, config.batch_size, shuffle_seed=config.seed + 1000 * epoch)

    batches = endless()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return run(model, config, batch=lambda step: next(batches), loss=lambda net, batch: net(**batch).loss,
               optimizer=optimizer, tokens=lambda batch: int(batch["attention_mask"].sum()), progress=progress,
               desc="question answering")


@torch.no_grad()
def predict_answers(model: nn.Module, encoded: Dataset, contexts: Sequence[str],
                    tokenizer: PreTrainedTokenizerBase, *, batch_size: int = 64,
                    max_answer_len: int = MAX_ANSWER_LEN) -> list[str]:
    """The answer text `model` gives to each question of `encoded` (rows of `encode_questions`, in eval mode):
    its best span (`decode_spans`) mapped back to the characters of `contexts[i]`."""
    require_positive_int("batch_size", batch_size)
    if len(contexts) != len(encoded):
        raise ValueError(f"contexts has {len(contexts)} passages but encoded has {len(encoded)} rows; expected one "
                         f"per row, in order")
    device = next(model.parameters()).device
    spans: list[list[int]] = []
    with eval_mode(model):
        for batch in _loader(encoded.remove_columns(["offset_mapping"]), tokenizer, batch_size):
            inputs = {k: batch[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask") if k in batch}
            out = model(**inputs)
            spans += decode_spans(out.start_logits.cpu(), out.end_logits.cpu(), batch["passage_mask"],
                                  max_answer_len).tolist()
    return [span_text(context, offsets, start, end)
            for context, offsets, (start, end) in zip(contexts, encoded["offset_mapping"], spans)]


def evaluate_qa(model: nn.Module, encoded: Dataset, rows: Dataset, tokenizer: PreTrainedTokenizerBase, *,
                batch_size: int = 64, max_answer_len: int = MAX_ANSWER_LEN) -> dict[str, Any]:
    """SQuAD's scores of `model` on questions `rows` (SQuAD's columns) encoded as `encoded`, row for row:
    {"exact_match", "f1" (fractions, each best over a question's gold answers), "predictions" (one text each)}."""
    predictions = predict_answers(model, encoded, list(rows["context"]), tokenizer, batch_size=batch_size,
                                  max_answer_len=max_answer_len)
    return squad_scores(predictions, [answers["text"] for answers in rows["answers"]]) | {"predictions": predictions}


def answer_question(model: nn.Module, tokenizer: PreTrainedTokenizerBase, question: str, passage: str,
                    max_answer_len: int = MAX_ANSWER_LEN) -> tuple[str, float]:
    """(the answer `model` reads off `passage`, its score start_logit + end_logit). A passage longer than the
    tokenizer's limit is cut, with a warning: the answer can only come from its beginning."""
    _check_text("question", question)
    _check_text("passage", passage)
    _check_fast(tokenizer)
    encoding = tokenizer(question, passage, truncation="only_second", return_offsets_mapping=True,
                         return_tensors="pt")
    if encoding.encodings[0].overflowing:
        warnings.warn(f"passage is longer than the tokenizer's {tokenizer.model_max_length} tokens; the answer can "
                      f"only come from its beginning", stacklevel=2)
    passage_mask = torch.tensor([int(s == 1) for s in encoding.sequence_ids(0)])
    inputs = {k: v.to(next(model.parameters()).device) for k, v in encoding.items() if k != "offset_mapping"}
    with eval_mode(model), torch.no_grad():
        out = model(**inputs)
    start_logits, end_logits = out.start_logits[0].float().cpu(), out.end_logits[0].float().cpu()
    start, end = best_span(start_logits, end_logits, passage_mask, max_answer_len)
    score = float(start_logits[start] + end_logits[end])
    return span_text(passage, encoding["offset_mapping"][0].tolist(), start, end), score
