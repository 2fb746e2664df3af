"""labkit.qa: the question set built from CoNLL-2003 (hand-built and real sentences), SQuAD from the hub or, within
seconds, not; the encoding's answer tokens read back through the offsets; the span head equal to Hugging Face's
BertForQuestionAnswering; span decoding against a brute-force search; SQuAD's exact match and F1 on worked examples;
training through the loop; and every bad input answered with one clear error."""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import labkit.data as data
from labkit.data import load_data, load_from_hub
from labkit.modules import IGNORE_INDEX
from labkit.presets import finetune_recipe
from labkit.qa import (QUESTIONS, SpanQAModel, answer_question, best_span, decode_spans, detokenize, encode_questions,
                       evaluate_qa, exact_match, load_questions, normalize_answer, predict_answers, qa_collator,
                       questions_from_conll, span_text, squad_scores, token_f1, train_span_qa)

# Four sentences: two people (no PER question), Germany twice (two gold answers), a dateline (too short), a MISC.
CONLL = """\
Angela NNP B-NP B-PER
Merkel NNP I-NP I-PER
met VBD B-VP O
Bill NNP B-NP B-PER
Clinton NNP I-NP I-PER
in IN B-PP O
Germany NNP B-NP B-LOC
, , O O
Germany NNP B-NP B-LOC
's POS B-NP O
capital NN I-NP O
. . O O

BONN NNP B-NP B-LOC
1996-08-30 CD I-NP O

The DT B-NP O
Dutch JJ I-NP B-MISC
team NN I-NP O
won VBD B-VP O
( ( O O
again RB B-ADVP O
) ) O O
. . O O
"""


@pytest.fixture(scope="module")
def tiny_conll(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("conll2003")
    for name in ("eng.train", "eng.testa", "eng.testb"):
        (folder / name).write_text(CONLL, encoding="utf-8")
    return load_data("conll2003", path=folder)


@pytest.fixture(scope="module")
def tiny_questions(tiny_conll):
    return questions_from_conll(tiny_conll)


def _tiny_bert(vocab_size: int, seed: int = 0):
    from transformers import BertConfig, BertForQuestionAnswering

    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(seed)
    return BertForQuestionAnswering(config).eval()


# ---------------------------------------------------------------------------------------------- the question set


def test_detokenize_glues_punctuation_clitics_brackets_and_quotes() -> None:
    words = ['"', "We", "do", "n't", "know", ",", '"', "Smith", "'s", "aide", "said", "(", "$", "5", ")", "."]
    text, starts = detokenize(words)
    assert text == '"We don\'t know," Smith\'s aide said ($5).'
    assert all(text[start:start + len(word)] == word for word, start in zip(words, starts))


def test_questions_from_hand_built_sentences(tiny_questions) -> None:
    rows = tiny_questions["train"].to_list()
    merkel = "Angela Merkel met Bill Clinton in Germany, Germany's capital."
    assert [(r["question"], r["context"], r["answers"]) for r in rows] == [
        (QUESTIONS["LOC"], merkel, {"text": ["Germany", "Germany"], "answer_start": [34, 43]}),
        (QUESTIONS["MISC"], "The Dutch team won (again).", {"text": ["Dutch"], "answer_start": [4]}),
    ]  # no PER question (two people), nothing from the 2-word dateline
    assert [r["id"] for r in rows] == ["conll2003-train-0-LOC", "conll2003-train-2-MISC"]
    # the validation split comes from eng.testa, which holds the same sentences here
    assert list(tiny_questions["validation"]["context"]) == list(tiny_questions["train"]["context"])


def test_questions_from_the_real_conll(data_dir: Path) -> None:
    questions = questions_from_conll(load_data("conll2003"))
    assert (len(questions["train"]), len(questions["validation"])) == (9899, 2464)
    for row in questions["validation"]:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            assert row["context"][start:start + len(text)] == text
    assert questions["validation"][0]["id"].startswith("conll2003-validation-")
    train_contexts = set(questions["train"]["context"])
    assert sum(c in train_contexts for c in set(questions["validation"]["context"])) < 50  # held out: a few
    # headlines repeat across the files, no more


def test_offline_the_questions_come_from_conll_at_once(tiny_conll, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(data, "hub_check", lambda: pytest.fail("the hub check must not run when switched off"))
    questions, name = load_questions(tiny_conll)
    assert name == "CoNLL-2003 entity questions" and len(questions["train"]) == 2
    out = capsys.readouterr().out
    assert "switched off by HF_HUB_OFFLINE" in out and "they are not SQuAD" in out


def test_a_silent_hub_falls_back_within_seconds(tiny_conll, monkeypatch, silent_hub, capsys) -> None:
    monkeypatch.setenv("HF_ENDPOINT", silent_hub)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    began = time.perf_counter()
    _, name = load_questions(tiny_conll)
    assert time.perf_counter() - began < data.HUB_TIMEOUT_S + 1.5
    assert name == "CoNLL-2003 entity questions" and "not reachable within 3 s" in capsys.readouterr().out


def test_online_squad_comes_from_the_hub_by_its_name(monkeypatch, capsys, tiny_questions) -> None:
    import datasets

    asked = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(data, "hub_check", lambda: True)
    hub_copy = datasets.DatasetDict({"train": tiny_questions["train"], "validation": tiny_questions["validation"],
                                     "extra": tiny_questions["train"]})
    monkeypatch.setattr(datasets, "load_dataset", lambda name: asked.append(name) or hub_copy)
    questions, name = load_questions()
    assert asked == ["rajpurkar/squad"] and name == "SQuAD v1.1" and list(questions) == ["train", "validation"]
    assert capsys.readouterr().out == "labkit.data: squad from the Hugging Face hub (rajpurkar/squad)\n"
    monkeypatch.setattr(datasets, "load_dataset", lambda name: (_ for _ in ()).throw(ConnectionError("reset")))
    with pytest.raises(FileNotFoundError, match=r"loading 'rajpurkar/squad' from the Hugging Face hub failed \(reset"):
        load_from_hub("squad")
    with pytest.raises(ValueError, match=r"name must be one of \['squad'\], got 'sst2'"):
        load_from_hub("sst2")


# ---------------------------------------------------------------------------------------------- encoding


def test_the_answer_tokens_read_back_the_answer(packaged_tokenizer, tiny_questions) -> None:
    rows = tiny_questions["train"]
    encoded = encode_questions(packaged_tokenizer, rows, 64)
    for row, enc in zip(rows, encoded):
        assert span_text(row["context"], enc["offset_mapping"], enc["start_positions"], enc["end_positions"]) == \
            row["answers"]["text"][0]
        pieces = packaged_tokenizer(row["question"], row["context"])
        assert enc["input_ids"] == pieces["input_ids"]
        assert enc["passage_mask"] == [int(s == 1) for s in pieces.sequence_ids()]
    assert encoded[1]["start_positions"] == encoded[1]["end_positions"]  # "Dutch": one token
    batch = qa_collator(packaged_tokenizer)([encoded[0], encoded[1]])
    assert batch["input_ids"].shape == batch["passage_mask"].shape and batch["start_positions"].tolist() == \
        [encoded[0]["start_positions"], encoded[1]["start_positions"]]
    assert batch["passage_mask"][1, len(encoded[1]["input_ids"]):].sum() == 0  # padding is no passage


def test_an_answer_past_the_cut_is_ignored_with_one_warning(packaged_tokenizer) -> None:
    from datasets import Dataset

    rows = Dataset.from_dict({"question": ["Who?", "Who?"],
                              "context": ["Ada wrote to Bob.", "One two three four Ada."],
                              "answers": [{"text": ["Ada"], "answer_start": [0]},
                                          {"text": ["Ada"], "answer_start": [19]}]})
    with pytest.warns(UserWarning, match=r"1 of 2 answers lie past max_len=8 tokens"):
        encoded = encode_questions(packaged_tokenizer, rows, 8)  # [CLS] who ? [SEP] + 3 passage tokens + [SEP]
    assert (encoded[0]["start_positions"], encoded[0]["end_positions"]) == (4, 4)
    assert (encoded[1]["start_positions"], encoded[1]["end_positions"]) == (IGNORE_INDEX, IGNORE_INDEX)
    assert [len(ids) for ids in encoded["input_ids"]] == [8, 8]


def test_bad_rows_are_refused(packaged_tokenizer, tiny_questions) -> None:
    rows = tiny_questions["train"]
    moved = rows.map(lambda r: {"answers": {"text": r["answers"]["text"], "answer_start": [1, 1]}})
    with pytest.raises(ValueError, match=r"rows\[0\]: the answer 'Germany' is not at character 1"):
        encode_questions(packaged_tokenizer, moved, 64)
    with pytest.raises(ValueError, match=r"got 2 rows, missing \['answers'\]"):
        encode_questions(packaged_tokenizer, rows.remove_columns("answers"), 64)
    with pytest.raises(ValueError, match=r"got 0 rows"):
        encode_questions(packaged_tokenizer, rows.select([]), 64)
    unanswered = rows.map(lambda r: {"answers": {"text": [], "answer_start": []}})
    with pytest.raises(ValueError, match=r"rows\[0\] has no answer"):
        encode_questions(packaged_tokenizer, unanswered, 64)
    with pytest.raises(ValueError, match=r"rows\[1\]\['question'\] is ' '"):
        encode_questions(packaged_tokenizer, rows.map(lambda r, i: {"question": r["question"] if i == 0 else " "},
                                                      with_indices=True), 64)
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        encode_questions(packaged_tokenizer, rows, 0)
    with pytest.raises(ValueError, match=r"max_len=20 leaves no room for the passage of rows\[1\], whose question "
                                         r"alone takes 18 tokens; expected a max_len above 21"):
        encode_questions(packaged_tokenizer, rows, 20)


# ---------------------------------------------------------------------------------------------- the span head


def test_the_span_head_is_bert_for_question_answering() -> None:
    reference = _tiny_bert(50)
    ours = SpanQAModel(reference.bert).eval()
    ours.span_head.load_state_dict(reference.qa_outputs.state_dict())
    g = torch.Generator().manual_seed(1)
    mask = (torch.arange(9)[None] < torch.tensor([9, 6, 7])[:, None]).long()
    inputs = {"input_ids": torch.randint(1, 50, (3, 9), generator=g) * mask, "attention_mask": mask,
              "token_type_ids": (torch.arange(9) >= 4).long().expand(3, 9) * mask,
              "start_positions": torch.tensor([4, 5, 6]), "end_positions": torch.tensor([6, 5, 6])}
    theirs, mine = reference(**inputs), ours(**inputs)
    torch.testing.assert_close(mine.start_logits, theirs.start_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(mine.end_logits, theirs.end_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(mine.loss, theirs.loss, rtol=0, atol=1e-6)
    assert ours(**{k: v for k, v in inputs.items() if "positions" not in k}).loss is None
    with pytest.raises(TypeError, match="encoder must be a Hugging Face model with config.hidden_size"):
        SpanQAModel(torch.nn.Linear(3, 3))


# ---------------------------------------------------------------------------------------------- decoding


def _brute_force(start, end, mask, max_len):
    pairs = [(i, j) for i, j in itertools.product(range(len(start)), repeat=2)
             if mask[i] and mask[j] and i <= j < i + max_len]
    return max(pairs, key=lambda p: float(start[p[0]] + end[p[1]]))


@pytest.mark.parametrize("seed", range(4))
def test_decoding_finds_what_a_brute_force_search_finds(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    start, end = torch.randn(5, 17, generator=g), torch.randn(5, 17, generator=g)
    mask = torch.rand(5, 17, generator=g) < 0.6
    mask[:, 8] = True  # every row has a passage
    max_len = 1 + seed
    spans = decode_spans(start, end, mask.long(), max_len)
    for row in range(5):
        expected = _brute_force(start[row], end[row], mask[row], max_len)
        assert tuple(spans[row].tolist()) == expected == best_span(start[row], end[row], mask[row], max_len)


def test_decoding_worked_example_and_bad_inputs() -> None:
    start = torch.tensor([9.0, 0.0, 3.0, 1.0, 0.0])  # [CLS] scores highest: masked out
    end = torch.tensor([9.0, 2.0, 0.0, 0.5, 4.0])
    mask = torch.tensor([False, True, True, True, True])
    assert best_span(start, end, mask, 3) == (2, 4)  # 3 + 4; (1, 4) scores 4, (2, 1) runs backwards
    assert best_span(start, end, mask, 2) == (3, 4)  # 1 + 4 = 5 beats (2, 3) = 3.5 and (2, 2) = 3
    assert span_text("Paris is in France", [(0, 0), (0, 5), (6, 8), (9, 11), (12, 18)], 1, 2) == "Paris is"
    with pytest.raises(ValueError, match="max_answer_len must be a positive int, got 0"):
        best_span(start, end, mask, 0)
    with pytest.raises(ValueError, match=r"must all be \(batch, seq\), got \(1, 5\), \(1, 4\)"):
        decode_spans(start[None], end[None, :4], mask[None])
    with pytest.raises(ValueError, match="a row with no passage token"):
        best_span(start, end, torch.zeros(5, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------- SQuAD's metrics


def test_normalisation_and_the_worked_examples() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear & the rest") == "apple pear rest"
    assert normalize_answer("theatre") == "theatre"  # only whole words are articles
    assert exact_match("the Eiffel Tower", "Eiffel tower") == token_f1("the Eiffel Tower", "Eiffel tower") == 1.0
    assert exact_match("in Paris, France", "Paris") == 0.0
    assert token_f1("in Paris, France", "Paris") == pytest.approx(2 * (1 / 3 * 1) / (1 / 3 + 1))  # 0.5
    assert token_f1("Paris", "in Paris, France") == pytest.approx(0.5)  # symmetric
    assert token_f1("Werner Zwingmann", "Zwingmann") == pytest.approx(2 * (1 / 2 * 1) / (1 / 2 + 1))  # 0.667
    assert token_f1("York York", "New York") == pytest.approx(0.5)  # "york" shared once, not twice
    assert token_f1("", "Paris") == 0.0 and token_f1("the", "a") == 0.0  # SQuAD v1.1: nothing shared is 0


def test_squad_scores_take_the_best_gold_answer() -> None:
    scores = squad_scores(["Eiffel tower", "Paris"], [["the tower", "the Eiffel Tower"], ["Lyon", "in Paris, France"]])
    assert scores == pytest.approx({"exact_match": 0.5, "f1": (1.0 + 0.5) / 2})
    with pytest.raises(ValueError, match="one per question"):
        squad_scores(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match=r"gold_answers\[0\] is 'Paris'; expected a non-empty list"):
        squad_scores(["Paris"], ["Paris"])


# ---------------------------------------------------------------------------------------------- train and score


def test_training_through_the_loop_fits_the_answers(packaged_tokenizer, tiny_questions) -> None:
    encoded = encode_questions(packaged_tokenizer, tiny_questions["train"], 64)
    model = SpanQAModel(_tiny_bert(packaged_tokenizer.vocab_size).bert)
    config = replace(finetune_recipe(30, batch_size=2, lr=5e-3), bf16=False)
    before = evaluate_qa(model, encoded, tiny_questions["train"], packaged_tokenizer)
    history = train_span_qa(model, encoded, packaged_tokenizer, config, progress=False)
    after = evaluate_qa(model, encoded, tiny_questions["train"], packaged_tokenizer)
    assert history.step == 30 and history.train_loss[-1] < 0.2 * history.train_loss[0]
    assert before["exact_match"] < 1.0 and after == {"exact_match": 1.0, "f1": 1.0, "predictions": ["Germany", "Dutch"]}
    assert predict_answers(model, encoded, list(tiny_questions["train"]["context"]), packaged_tokenizer,
                           batch_size=1) == after["predictions"]
    answer, score = answer_question(model, packaged_tokenizer, QUESTIONS["MISC"], "The Dutch team won (again).")
    assert answer == "Dutch" and isinstance(score, float)
    with pytest.raises(ValueError, match="config.optimizer='muon' is for TinyGPT's blocks"):
        train_span_qa(model, encoded, packaged_tokenizer, replace(config, optimizer="muon"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cut = encode_questions(packaged_tokenizer, tiny_questions["train"].select([0]), 16)
    with pytest.raises(ValueError, match="no question whose answer survived the cut"):
        train_span_qa(model, cut, packaged_tokenizer, config)
    with pytest.raises(ValueError, match="contexts has 1 passages but encoded has 2 rows"):
        predict_answers(model, encoded, ["x"], packaged_tokenizer)


def test_a_long_passage_is_cut_with_a_warning(packaged_tokenizer) -> None:
    model = SpanQAModel(_tiny_bert(packaged_tokenizer.vocab_size).bert)
    with pytest.warns(UserWarning, match="passage is longer than the tokenizer's 512 tokens"):
        answer, _ = answer_question(model, packaged_tokenizer, "Who?", "word " * 600)
    assert answer in "word " * 600
    with pytest.raises(ValueError, match=r"question is ' '; expected a non-empty"):
        answer_question(model, packaged_tokenizer, " ", "A passage.")
