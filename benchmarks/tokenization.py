"""Byte-level BPE on Tiny Shakespeare: what the vocabulary size does to sequence length, and whether a tiny GPT
trained on BPE tokens beats one trained on characters, measured fairly (bits per character on the same text).

    .venv/bin/python benchmarks/tokenization.py            # about 6 minutes on 2 CPU cores
    .venv/bin/python benchmarks/tokenization.py --quick    # about a minute: the smoke preset, smaller tokenizers

Data: Tiny Shakespeare through `labkit.data` (LABKIT_DATA), cut 90 / 10 where notebook 04 cuts it
(`labkit.tokenization.split_text`). BPE (`labkit.tokenization.train_bpe`, GPT-2's pre-split) is learned on the
training text only, once, to the largest vocabulary; each smaller one is its first merges. Checked on the way: the
same merges as Hugging Face's `tokenizers` trained with the same settings, and an exact round trip on the whole text.

Printed:
1. vocabulary size against sequence length on the validation text: tokens, tokens per character, characters per
   token, and the parameters the embedding and output layer take at the model's width;
2. tiny GPTs with notebook 04's shape (`preset_for(device, "tiny_gpt")`, or `smoke` with --quick), one on
   characters and one per BPE vocabulary, each trained for the same steps on batches of the same number of tokens
   (so a BPE model reads more text per step), scored on the whole validation text: loss per token (nats, not
   comparable across tokenizers) and bits per character (comparable).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from labkit.blocks import count_parameters
from labkit.corpus import CharCorpus
from labkit.data import load_data
from labkit.device import describe_device, pick_device, set_seed
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import get_preset, preset_for
from labkit.tokenization import (library_bpe, library_merges, score_text, split_text, token_corpus, train_bpe,
                                 vocab_size_sweep)
from labkit.train import train

FULL = dict(sweep=(256, 512, 1024, 2048, 4096), gpt_vocabs=(512, 1024, 2048), steps=400, bpe_chars=None)
QUICK = dict(sweep=(256, 320, 384, 512), gpt_vocabs=(512,), steps=None, bpe_chars=200_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smoke preset and smaller tokenizers (a minute)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL

    device = pick_device()
    preset = get_preset("tiny_gpt", "smoke") if args.quick else preset_for(device, "tiny_gpt")
    config = replace(preset.train, seed=args.seed)
    if plan["steps"]:
        config = replace(config, steps=plan["steps"], eval_every=plan["steps"])
    print(f"device: {describe_device(device)}; preset {preset.name}: {dict(preset.shape)}, {config.steps} steps of "
          f"{config.batch_size} × {preset.shape['block_size']} tokens")

    text = load_data("tinyshakespeare")
    train_text, val_text = split_text(text)
    bpe_text = train_text[:plan["bpe_chars"]] if plan["bpe_chars"] else train_text
    largest = max(plan["sweep"])
    start = time.perf_counter()
    bpe = train_bpe(bpe_text, largest)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    library = library_bpe(bpe_text, largest)
    library_s = time.perf_counter() - start
    same = [(bpe.vocab[a], bpe.vocab[b]) for a, b in bpe.merges] == library_merges(library)
    assert bpe.decode(bpe.encode(text)) == text, "the round trip lost something"
    print(f"BPE to {largest} tokens on {len(bpe_text):,} characters: {ours_s:.1f} s by hand, {library_s:.1f} s with "
          f"tokenizers; same merges in the same order: {same}; tokens spelled twice: {len(bpe.repeated_tokens)}; "
          f"round trip on all {len(text):,} characters exact")

    d_model = preset.shape["d_model"]
    tie_head = GPTConfig(vocab_size=1, **preset.shape).tie_head
    print(f"\n1. Vocabulary size against sequence length, on the {len(val_text):,} validation characters "
          f"(parameters at d_model = {d_model}, {'tied' if tie_head else 'untied'} output layer)")
    print(f"{'vocab':>6} {'tokens':>8} {'tokens/char':>12} {'chars/token':>12} {'emb+head params':>16}")
    for row in vocab_size_sweep(bpe, val_text, plan["sweep"], d_model=d_model, tie_head=tie_head):
        print(f"{row.vocab_size:>6} {row.tokens:>8,} {row.tokens_per_character:>12.3f} "
              f"{row.characters_per_token:>12.2f} {row.embedding_parameters:>16,}")

    contenders = [("characters", CharCorpus.from_text(text))]
    contenders += [(f"BPE {v}", token_corpus(bpe.with_vocab_size(v), train_text, val_text))
                   for v in plan["gpt_vocabs"]]
    results = []
    for name, corpus in contenders:
        set_seed(args.seed)
        model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **preset.shape))
        history = train(model, corpus, config, device=device, progress=False)
        score = score_text(model, corpus.tokenizer, val_text, device=device)
        chars_per_token = len(train_text) / len(corpus.train)
        results.append((name, corpus.tokenizer.vocab_size, count_parameters(model), chars_per_token,
                        history.elapsed_s - history.eval_s, score))
        print(f"  trained {name}: {history.elapsed_s - history.eval_s:.0f} s, val loss per token "
              f"{score.loss_per_token:.3f}, {score.bits_per_character:.3f} bits per character")

    block = preset.shape["block_size"]
    print(f"\n2. Tiny GPTs, {config.steps} steps of {config.batch_size} × {block} tokens each, scored on the whole "
          f"validation text ({len(val_text):,} characters)")
    print(f"{'tokenizer':>11} {'vocab':>6} {'params':>9} {'chars/token':>12} {'chars/block':>12} {'train s':>8} "
          f"{'nats/token':>11} {'bits/char':>10}")
    for name, vocab, params, cpt, seconds, score in results:
        print(f"{name:>11} {vocab:>6} {params:>9,} {cpt:>12.2f} {cpt * block:>12.0f} {seconds:>8.0f} "
              f"{score.loss_per_token:>11.3f} {score.bits_per_character:>10.3f}")


if __name__ == "__main__":
    main()
