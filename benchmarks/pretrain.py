"""A tiny BERT pretrained on masked-LM + next-sentence prediction, scored on held-out text against simple baselines.

    .venv/bin/python benchmarks/pretrain.py                  # the preset for this device, 10 minutes of training
    .venv/bin/python benchmarks/pretrain.py --minutes 1 --preset smoke

Data: Tiny Shakespeare lines, CoNLL-2003 sentences and SST-2 sentences through `labkit.data` (LABKIT_DATA), paired
for NSP and masked for MLM by `labkit.pretraining_data`, tokenized with the packaged all-MiniLM-L6-v2 WordPiece
tokenizer. Held out: the last 10% of Tiny Shakespeare's speeches, CoNLL-2003 validation and SST-2 validation, each
with one fixed set of masks.

Printed: the tiny BERT's masked-token top-1 / top-5 accuracy and NSP accuracy on every held-out example after
`--minutes` of training (the clock includes the periodic evaluations), next to the unigram-frequency baseline
(always guess the most frequent training tokens) and NSP's chance. Targets on 2 CPU cores within 10 minutes:
masked top-1 ≥ 2× the unigram baseline's, NSP ≥ 75%.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace

from labkit.assets import load_tokenizer
from labkit.blocks import count_parameters
from labkit.device import describe_device, pick_device, set_seed
from labkit.models import BertConfig, TinyBERT
from labkit.presets import PRESETS, get_preset, preset_for
from labkit.pretraining import NSP_CHANCE, evaluate, pretrain, unigram_baseline
from labkit.pretraining_data import PretrainingData

TOP1_RATIO = 2.0
NSP_TARGET = 0.75


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS["pretraining"]), help="default: the one for this device")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = pick_device()
    preset = get_preset("pretraining", args.preset) if args.preset else preset_for(device, "pretraining")
    shape, config = preset.shape, preset.train
    config = replace(config, seed=args.seed, time_limit_s=60 * args.minutes)
    print(f"device: {describe_device(device)}; preset {preset.name}: {shape}, {config.steps} steps of "
          f"{config.batch_size}, lr {config.lr:g}, at most {args.minutes:g} min")

    tokenizer = load_tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the few CoNLL pairs longer than max_len are cut; counted below
        data = PretrainingData.build(tokenizer, max_len=shape["max_len"], seed=args.seed)
    print(f"data: {len(data.train):,} train and {len(data.heldout):,} held-out examples, built in "
          f"{data.build_s:.1f} s")
    heldout = list(data.heldout_batches(256))
    unigram = unigram_baseline(data.token_counts(), heldout)

    set_seed(args.seed)
    model = TinyBERT(BertConfig(vocab_size=len(tokenizer), **shape))
    print(f"TinyBERT: {count_parameters(model):,} parameters")
    start = time.perf_counter()
    history = pretrain(model, data, config, device=device)
    wall = time.perf_counter() - start
    scores = evaluate(model, heldout, device=device, bf16=config.bf16)

    print()
    print(f"held-out: {scores['masked']:,} masked tokens, {scores['pairs']:,} sentence pairs")
    print(f"{'':28}{'top-1':>8}{'top-5':>8}{'NSP':>8}")
    print(f"{'unigram baseline / chance':28}{unigram['top1']:8.2%}{unigram['top5']:8.2%}{NSP_CHANCE:8.1%}")
    print(f"{'tiny BERT':28}{scores['top1']:8.2%}{scores['top5']:8.2%}{scores['nsp_accuracy']:8.1%}")
    print(f"tiny BERT: {history.step} steps in {wall:.0f} s ({history.tokens_per_s:,.0f} tokens/s), "
          f"held-out MLM loss {scores['mlm_loss']:.3f}, NSP loss {scores['nsp_loss']:.3f}")
    ratio = scores["top1"] / unigram["top1"]
    print(f"masked top-1 = {ratio:.2f} × unigram (target ≥ {TOP1_RATIO:g}: {'met' if ratio >= TOP1_RATIO else 'NOT met'})")
    met = scores["nsp_accuracy"] >= NSP_TARGET
    print(f"NSP accuracy {scores['nsp_accuracy']:.1%} (target ≥ {NSP_TARGET:.0%}: {'met' if met else 'NOT met'})")


if __name__ == "__main__":
    main()
