"""Extractive question answering (notebook 06, section 8): SQuAD's exact match and F1 on the held-out questions,
with the span head untrained, after the fast-mode preset and after the device's preset, in one table.

    .venv/bin/python benchmarks/qa.py                 # about 5 minutes on 2 CPU cores
    .venv/bin/python benchmarks/qa.py --runs smoke    # the fast-mode row only

The questions are SQuAD v1.1 when the hub answers, else the set `labkit.qa` builds from CoNLL-2003's gold entities
(train: eng.train; held out: eng.testa); the encoder is `bert-base-uncased` when cached or online, else the packaged
all-MiniLM-L6-v2. Each run starts from the same pretrained encoder and a span head seeded with 0, trains with its
preset (`labkit.presets`, family "qa") through `labkit.qa.train_span_qa`, and is scored on every held-out question
(and, for the smoke preset, on the 300 the notebook scores in fast mode).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from labkit.assets import load_model, load_tokenizer
from labkit.data import load_data
from labkit.device import describe_device, pick_device, set_seed
from labkit.presets import get_preset
from labkit.qa import SpanQAModel, encode_questions, evaluate_qa, load_questions, train_span_qa


def subset(rows, n):
    """The first n rows after a seeded shuffle (all of them when n is None), as the notebook takes them."""
    return rows if n is None else rows.shuffle(seed=0).select(range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["untrained", "smoke", "device"],
                        choices=["untrained", "smoke", "device"])
    args = parser.parse_args()
    device = pick_device()
    print(describe_device(device), f"| {torch.get_num_threads()} threads")
    questions, name = load_questions(load_data("conll2003"))
    tokenizer = load_tokenizer()
    heldout = questions["validation"]
    rows = []
    for run in args.runs:
        preset = get_preset("qa", "smoke" if run in ("untrained", "smoke") else
                            "cuda" if device.type == "cuda" else "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the count of answers cut off is printed below
            train = encode_questions(tokenizer, subset(questions["train"], preset.data.get("train_examples")),
                                     preset.data["max_len"])
            encoded = encode_questions(tokenizer, heldout, preset.data["max_len"])
        set_seed(0)
        model = SpanQAModel(load_model()).to(device)
        seconds, steps = 0.0, 0
        if run != "untrained":
            start = time.perf_counter()
            history = train_span_qa(model, train, tokenizer, preset.train)
            seconds, steps = time.perf_counter() - start, history.step
        scores = {"all held out": evaluate_qa(model, encoded, heldout, tokenizer)}
        if run != "device":
            few = subset(heldout, get_preset("qa", "smoke").data["heldout_examples"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                few_encoded = encode_questions(tokenizer, few, preset.data["max_len"])
            scores["notebook's 300"] = evaluate_qa(model, few_encoded, few, tokenizer)
        for what, score in scores.items():
            rows.append((run, preset.name, steps, len(train), preset.data["max_len"], what, len(score["predictions"]),
                         score["exact_match"], score["f1"], seconds))
    print(f"\n{name}; held-out split: validation")
    print(f"{'run':<10} {'preset':<7} {'steps':>5} {'train':>6} {'max_len':>7} {'scored on':<15} {'n':>5} "
          f"{'EM':>6} {'F1':>6} {'train s':>8}")
    for run, preset, steps, n_train, max_len, what, n, em, f1, seconds in rows:
        print(f"{run:<10} {preset:<7} {steps:>5} {n_train:>6} {max_len:>7} {what:<15} {n:>5} {em:>6.1%} {f1:>6.1%} "
              f"{seconds:>8.0f}")


if __name__ == "__main__":
    main()
