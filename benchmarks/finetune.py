"""Fine-tuning the lab's pretrained encoder on SST-2 and CoNLL-2003, next to a bag-of-words baseline, in one run.

    .venv/bin/python benchmarks/finetune.py                    # 15 minutes of training per task at most
    .venv/bin/python benchmarks/finetune.py --minutes 1 --sst2-steps 100 --conll-steps 100

(1) TF-IDF (words and word pairs) + logistic regression on SST-2: GLUE dev accuracy and wall time.
(2) The encoder (`bert-base-uncased` when cached or online, else the packaged all-MiniLM-L6-v2) fine-tuned on SST-2
    with `Trainer` and the lab's recipe (`labkit.trainer_setup.training_arguments`): dev accuracy, wall time.
(3) The same encoder fine-tuned on CoNLL-2003 NER: entity-level F1 (seqeval) on validation (eng.testa) and test
    (eng.testb), wall time. The packaged encoder is uncased, so the tagger also reads each word's shape (lower,
    Capitalized, UPPER, ...; `labkit.word_shape.ShapeAwareTagger`); `--plain-tagger` leaves that out.
Each fine-tuning run takes its step budget with the schedule decaying to 0 at the last step, and stops early if
`--minutes` of training have passed (then the schedule has not finished). Steps run in bf16 autocast where the
device multiplies bf16 in hardware (`labkit.device.bf16_is_fast`: a recent GPU, or a CPU with AVX-512 BF16 or AMX).
The default budgets fit 15 minutes on 2 such CPU cores (about 0.12 s a step for SST-2, 0.15 s for CoNLL-2003); a
CPU that computes in float32 takes about twice as long a step, and fits `--sst2-steps 4000 --conll-steps 2900`.
Targets on 2 CPU cores: SST-2 dev ≥ 90.0% and CoNLL-2003 validation F1 ≥ 91.5, each within 15 minutes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from dataclasses import replace

from transformers import Trainer

from labkit.assets import load_model, load_tokenizer
from labkit.data import NER_TAGS, SST2_LABELS, load_data
from labkit.device import bf16_is_fast, describe_device, pick_device, set_seed
from labkit.finetune import score_dataset
from labkit.finetune_data import data_collator, encode_sentences, encode_tagged
from labkit.presets import finetune_recipe
from labkit.trainer_setup import TimeLimit, training_arguments
from labkit.word_shape import ShapeAwareTagger

SST2_TARGET = 0.900
CONLL_TARGET = 0.915
MAX_LEN = 128


def tfidf_baseline(sst2) -> tuple[float, float]:
    """(dev accuracy, seconds) of TF-IDF on words and word pairs + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    features = vectorizer.fit_transform(sst2["train"]["sentence"])
    classifier = LogisticRegression(C=4.0, max_iter=2000).fit(features, sst2["train"]["label"])
    predicted = classifier.predict(vectorizer.transform(sst2["validation"]["sentence"]))
    accuracy = float((predicted == sst2["validation"]["label"]).mean())
    return accuracy, time.perf_counter() - start


def fine_tune(model, train_data, tokenizer, task: str, steps: int, args) -> tuple[float, int]:
    """Train with Trainer for `steps` or `args.minutes`, whichever ends first → (seconds, steps done)."""
    limit = TimeLimit(60 * args.minutes)
    with tempfile.TemporaryDirectory() as runs:
        recipe = replace(finetune_recipe(steps, batch_size=args.batch_size, lr=args.lr), seed=args.seed)
        trainer = Trainer(model=model, args=training_arguments(runs, recipe, progress=not args.quiet),
                          train_dataset=train_data, data_collator=data_collator(tokenizer, task), callbacks=[limit])
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start, trainer.state.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per task (default 15)")
    parser.add_argument("--sst2-steps", type=int, default=7200, help="SST-2 optimizer steps (default 7200)")
    parser.add_argument("--conll-steps", type=int, default=4500, help="CoNLL-2003 optimizer steps (default 4500)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain-tagger", action="store_true", help="CoNLL-2003 without the word-shape input")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    device = pick_device()
    print(f"device: {describe_device(device)}, bf16 autocast {'on' if bf16_is_fast(device) else 'off'}; at most "
          f"{args.minutes:g} min of training per task, batch {args.batch_size}, lr {args.lr:g}")

    sst2, conll = load_data("sst2"), load_data("conll2003")
    baseline, baseline_s = tfidf_baseline(sst2)
    print(f"TF-IDF + logistic regression: SST-2 dev {baseline:.2%} in {baseline_s:.0f} s")

    tokenizer = load_tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a handful of CoNLL documents are longer than MAX_LEN tokens
        sst2_train = encode_sentences(tokenizer, sst2["train"]["sentence"], sst2["train"]["label"], MAX_LEN,
                                      SST2_LABELS)
        sst2_dev = encode_sentences(tokenizer, sst2["validation"]["sentence"], sst2["validation"]["label"],
                                    MAX_LEN, SST2_LABELS)
        ner = {split: encode_tagged(tokenizer, conll[split]["tokens"], conll[split]["ner_tags"], MAX_LEN, NER_TAGS,
                                    with_shapes=not args.plain_tagger)
               for split in ("train", "validation", "test")}

    set_seed(args.seed)
    classifier = load_model(task="sequence-classification", num_labels=2)
    sst2_s, sst2_steps = fine_tune(classifier, sst2_train, tokenizer, "sentence", args.sst2_steps, args)
    sst2_accuracy = score_dataset(classifier, sst2_dev, tokenizer, "sentence", SST2_LABELS)["accuracy"]

    set_seed(args.seed)
    tagger = load_model(task="token-classification", num_labels=len(NER_TAGS))
    tagger = tagger if args.plain_tagger else ShapeAwareTagger(tagger)
    conll_s, conll_steps = fine_tune(tagger, ner["train"], tokenizer, "token", args.conll_steps, args)
    f1 = {split: score_dataset(tagger, ner[split], tokenizer, "token", NER_TAGS)["entities"]["overall"]["f1"]
          for split in ("validation", "test")}

    print()
    print(f"{'run':56}{'score':>22}{'train s':>9}{'steps':>7}")
    print(f"{'TF-IDF + logistic regression, SST-2':56}{f'dev acc {baseline:.2%}':>22}{baseline_s:9.0f}{'':>7}")
    print(f"{'encoder fine-tuned, SST-2':56}{f'dev acc {sst2_accuracy:.2%}':>22}{sst2_s:9.0f}{sst2_steps:7d}")
    validation_f1, test_f1 = f"F1 {100 * f1['validation']:.2f}", f"F1 {100 * f1['test']:.2f}"
    tagger_name = "encoder" if args.plain_tagger else "encoder + word shapes"
    print(f"{tagger_name + ' fine-tuned, CoNLL-2003 validation':56}{validation_f1:>22}{conll_s:9.0f}{conll_steps:7d}")
    print(f"{tagger_name + ' fine-tuned, CoNLL-2003 test':56}{test_f1:>22}")
    for name, score, target, seconds in (("SST-2 dev accuracy", sst2_accuracy, SST2_TARGET, sst2_s),
                                         ("CoNLL-2003 validation F1", f1["validation"], CONLL_TARGET, conll_s)):
        met = score >= target and seconds <= 15 * 60
        print(f"{name} {100 * score:.2f} in {seconds / 60:.1f} min (target ≥ {100 * target:.1f} within 15 min: "
              f"{'met' if met else 'NOT met'})")


if __name__ == "__main__":
    main()
