"""The bias probes of notebooks 05 and 06 on models trained with the device's presets, not fast mode's: the pronoun
gap at a [MASK] after each occupation (`labkit.bias.pronoun_gaps`), and the change in a sentiment classifier's
P(positive) when only a name or an identity term changes (`labkit.bias.counterfactual_scores`), each mean over the
templates with its 95% percentile bootstrap interval (2,000 resamples of the templates, seed 0).

    .venv/bin/python benchmarks/bias.py            # about 15 minutes on 2 CPU cores (pretraining and fine-tuning)
    .venv/bin/python benchmarks/bias.py --quick    # the smoke presets (about 4 minutes)

Models: notebook 05's tiny BERT (`load_or_pretrain`) and notebook 06's sentiment classifier (`load_or_finetune`),
trained into a temporary folder with the presets for the device; bert-base-uncased's masked LM as well when it is
cached or the hub answers. Printed: for each masked LM, the gap over all occupations and the occupations with the
largest and the smallest gap; for the classifier, every gap.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from labkit.bias import (IDENTITY_GROUPS, NAME_GROUPS, GapEstimate, bootstrap_ci, counterfactual_scores,
                         estimate_gaps, pronoun_gaps, sentiment_gaps)
from labkit.device import describe_device, pick_device


def print_gaps(title: str, estimates: list[GapEstimate], unit: str) -> None:
    print(f"\n{title}")
    print(f"{'':<28} {'mean':>8} {'95% interval':>20}  excludes 0")
    for e in estimates:
        low, high = f"{e.low:+.3f}", f"{e.high:+.3f}"
        print(f"{e.name:<28} {e.mean:>+8.3f} {f'[{low}, {high}]':>20}  {'yes' if e.excludes_zero else 'no'}")
    print(f"({unit}; each over {estimates[0].n} templates)")


def pronoun_rows(model, tokenizer, shown: int = 3) -> list[GapEstimate]:
    """The gap over all occupations, then the `shown` occupations with the largest and the smallest mean gap."""
    gaps = pronoun_gaps(model, tokenizer, progress=True)
    per_template = torch.stack(list(gaps.values())).mean(0)  # (n_templates,)
    ranked = sorted(estimate_gaps(gaps), key=lambda e: e.mean, reverse=True)
    return [GapEstimate("all occupations", *bootstrap_ci(per_template), len(per_template)),
            *ranked[:shown], *ranked[-shown:]]


def sentiment_rows(model, tokenizer) -> list[GapEstimate]:
    scores = counterfactual_scores(model, tokenizer, {**NAME_GROUPS, **IDENTITY_GROUPS}, progress=True)
    return estimate_gaps(sentiment_gaps(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smoke presets (LABKIT_FAST=1)")
    args = parser.parse_args()
    if args.quick:
        os.environ["LABKIT_FAST"] = "1"
    from labkit.assets import load_model, load_tokenizer, resolve_model
    from labkit.finetune import load_or_finetune
    from labkit.pretraining import load_or_pretrain

    device = pick_device()
    print(describe_device(device), f"| {torch.get_num_threads()} threads | LABKIT_FAST={os.environ.get('LABKIT_FAST')}")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        tokenizer = load_tokenizer()
        tiny_bert = load_or_pretrain(Path(folder) / "tiny-bert.safetensors", tokenizer, device)
        print_gaps("tiny BERT (notebook 05): log P(he) − log P(she) at the mask", pronoun_rows(tiny_bert, tokenizer),
                   "nats")
        if resolve_model("bert-base-uncased").kind in {"path", "cache", "hub"}:
            bert = load_model("bert-base-uncased", task="masked-lm").to(device)
            print_gaps("bert-base-uncased: log P(he) − log P(she) at the mask",
                       pronoun_rows(bert, load_tokenizer("bert-base-uncased")), "nats")
        else:
            print("\nbert-base-uncased is neither cached nor reachable: left out")
        classifier, classifier_tokenizer = load_or_finetune(Path(folder) / "sentiment", "sentence", device)
        print_gaps("sentiment classifier (notebook 06): the change in P(positive)",
                   sentiment_rows(classifier, classifier_tokenizer), "probability")
        print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
