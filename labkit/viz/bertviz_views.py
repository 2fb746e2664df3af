"""bertviz's head, model and neuron views, drawing offline and on the first run in JupyterLab.

    from labkit.viz.bertviz_views import head_view, model_view   # instead of: from bertviz import ...
    attention, tokens = model_attention(model, tokenizer, "The cat sat on the mat.")
    head_view(attention, tokens)
    neuron_view("The cat sat on the mat.", "It was tired.")        # queries and keys of one head, on a BERT

bertviz writes a `<script>` that loads require.js from a CDN and, through it, d3 and jQuery from another; offline
nothing draws, and even with local copies the first run races the asynchronous loader. These wrappers call bertviz
itself (same arguments, same views) and change only how its libraries arrive: the cell carries d3 and jQuery inline
(`labkit.js_assets`, fetched from npm at set-up) and a small stand-in for require.js that hands them to bertviz's
script synchronously, in order. The weights are rounded (3 decimals by default), which shrinks bertviz's JSON
about fourfold. The neuron view needs the query and key vectors, which bertviz computes with its own BERT class:
`neuron_model` loads a BERT checkpoint's weights (safetensors) into that class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from IPython.display import HTML, display
from torch import Tensor

from labkit.assets import DEFAULT_ENCODER, resolve_model
from labkit.attention_stats import stack_attentions
from labkit.js_assets import LIBRARIES, library_source
from labkit.validate import require_positive_int

__all__ = ["model_attention", "offline_html", "head_view", "model_view", "neuron_model", "neuron_view"]

CDN_REQUIRE = '<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js"></script>'
# bertviz's script calls require.config(...) then requirejs(['jquery', 'd3'], function ($, d3) {...}).
REQUIRE_STAND_IN = """
if (typeof window.requirejs !== "function") {
  window.requirejs = window.require = function (deps, callback) {
    var modules = {d3: window.d3, jquery: window.jQuery};
    callback.apply(null, deps.map(function (name) { return modules[name]; }));
  };
  window.requirejs.config = function () {};
}
"""
MAX_TOKENS = 128


def _check_texts(text: str, text_b: str | None) -> None:
    """ValueError for an empty or blank text or second text (None means no second segment)."""
    for name, value in (("text", text), ("text_b", text_b)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{name} is empty: give a sentence to look at")


def model_attention(model: Any, tokenizer: Any, text: str, text_b: str | None = None) -> tuple[Tensor, list[str]]:
    """(attention (layers, heads, seq, seq), tokens) of a Hugging Face encoder on `text` (and `text_b` as a second
    segment).

    A model loaded with SDPA or flash attention returns no weights: it is switched to eager attention first, and
    this says so. Raises ValueError for empty text.
    """
    _check_texts(text, text_b)
    implementation = getattr(model.config, "_attn_implementation", "eager")
    if implementation != "eager":
        print(f"labkit.viz.bertviz_views: switching {type(model).__name__} from {implementation!r} to eager "
              "attention (the SDPA and flash kernels compute attention without returning its weights)")
        model.set_attn_implementation("eager")
    inputs = tokenizer(text, text_b, return_tensors="pt").to(next(model.parameters()).device)
    with torch.no_grad():
        outputs = model(**inputs, output_attentions=True)
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    return stack_attentions(outputs.attentions, tokens), tokens


def offline_html(bertviz_html: str) -> str:
    """bertviz's HTML with the CDN require.js tag replaced by d3, jQuery and the require stand-in, inline."""
    if CDN_REQUIRE not in bertviz_html:
        raise ValueError("this bertviz output does not load require.js from the CDN as bertviz 1.4 does: "
                         "labkit's offline wrapper does not know this bertviz version")
    libraries = "".join(
        f"<script>/* {lib.name} {lib.version}, {lib.licence_name} licence: see {lib.licence_path} */\n"
        f"{library_source(name)}\n</script>" for name, lib in LIBRARIES.items())
    return bertviz_html.replace(CDN_REQUIRE, libraries + f"<script>{REQUIRE_STAND_IN}</script>")


def _prepare(attention: Sequence[Tensor] | Tensor, tokens: Sequence[str], decimals: int,
             max_tokens: int) -> tuple[tuple[Tensor, ...], list[str]]:
    """bertviz's input (one (1, heads, seq, seq) tensor per layer, rounded) after labkit's checks."""
    require_positive_int("decimals", decimals)
    attn = stack_attentions(attention, tokens)  # (layers, heads, seq, seq)
    if attn.shape[-1] > max_tokens:
        raise ValueError(f"{attn.shape[-1]} tokens are more than bertviz's views handle well ({max_tokens}: "
                         "every weight goes into the page): look at a window of them with "
                         "labkit.attention_stats.window(attn, tokens, start, length), or use labkit's "
                         "AttentionExplorer, which draws long sequences window by window")
    return tuple(layer[None].double().round(decimals=decimals) for layer in attn), list(tokens)


def _show(html: str, html_action: str) -> HTML | None:
    if html_action == "view":
        display(HTML(html))
        return None
    if html_action == "return":
        return HTML(html)
    raise ValueError(f"html_action must be 'view' or 'return', got {html_action!r}")


def head_view(attention: Sequence[Tensor] | Tensor, tokens: Sequence[str], *, html_action: str = "view",
              decimals: int = 3, max_tokens: int = MAX_TOKENS, **kwargs: Any) -> HTML | None:
    """`bertviz.head_view` drawn offline. attention: a model's `outputs.attentions` (batch 1) or a stacked
    (layers, heads, seq, seq) tensor; kwargs go to bertviz (sentence_b_start, layer, heads, include_layers, ...)."""
    from bertviz import head_view as bertviz_head_view

    attn, tokens = _prepare(attention, tokens, decimals, max_tokens)
    html = bertviz_head_view(attn, tokens, html_action="return", **kwargs).data
    return _show(offline_html(html), html_action)


def model_view(attention: Sequence[Tensor] | Tensor, tokens: Sequence[str], *, html_action: str = "view",
               decimals: int = 3, max_tokens: int = MAX_TOKENS, **kwargs: Any) -> HTML | None:
    """`bertviz.model_view` (every layer and head as a grid) drawn offline; arguments as `head_view`."""
    from bertviz import model_view as bertviz_model_view

    attn, tokens = _prepare(attention, tokens, decimals, max_tokens)
    html = bertviz_model_view(attn, tokens, html_action="return", **kwargs).data
    return _show(offline_html(html), html_action)


def _local_folder(name: str, path: str | Path | None) -> Path:
    """A folder with config.json, vocab.txt and model.safetensors for `name` (the asset layer's sources)."""
    source = resolve_model(name, path)
    print(f"labkit.assets: {source}")
    if source.kind != "hub":
        return Path(source.location)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source.location, allow_patterns=["config.json", "vocab.txt", "model.safetensors"]))


def neuron_model(name: str = DEFAULT_ENCODER, path: str | Path | None = None) -> tuple[Any, Any]:
    """(bertviz's neuron-view BERT with the checkpoint's weights, in eval mode; its WordPiece tokenizer).

    `name` / `path` resolve as in `labkit.assets` (offline: the packaged all-MiniLM-L6-v2). ValueError for a
    checkpoint that is not a BERT with safetensors weights or whose weights do not fit bertviz's BERT."""
    from bertviz.transformers_neuron_view import BertModel, BertTokenizer
    from bertviz.transformers_neuron_view.modeling_bert import BertConfig
    from safetensors.torch import load_file

    folder = _local_folder(name, path)
    files = {f: folder / f for f in ("config.json", "vocab.txt", "model.safetensors")}
    missing = [f for f, p in files.items() if not p.exists()]
    if missing:
        raise ValueError(f"the neuron view needs a BERT checkpoint with {', '.join(files)}; {folder} lacks "
                         f"{', '.join(missing)}")
    config = BertConfig.from_json_file(str(files["config.json"]))
    if getattr(config, "model_type", "bert") != "bert":
        raise ValueError(f"the neuron view draws BERT models; {folder} holds a {config.model_type!r} model")
    config.output_attentions = True
    model = BertModel(config)
    # checkpoints saved from BertForPreTraining prefix "bert."; old ones name LayerNorm's parameters gamma / beta
    state = {key.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight")
             .replace("LayerNorm.beta", "LayerNorm.bias"): value
             for key, value in load_file(str(files["model.safetensors"])).items()}
    wanted = model.state_dict()
    absent = sorted(set(wanted) - set(state))
    if absent:
        raise ValueError(f"{files['model.safetensors']} has no weights for {', '.join(absent[:3])}"
                         f"{', ...' if len(absent) > 3 else ''}: not a BERT checkpoint bertviz's neuron view can draw")
    model.load_state_dict({key: state[key] for key in wanted})
    settings = folder / "tokenizer_config.json"  # cased checkpoints (bert-base-cased) say do_lower_case: false
    lower = json.loads(settings.read_text()).get("do_lower_case", True) if settings.exists() else True
    return model.eval(), BertTokenizer(str(files["vocab.txt"]), do_lower_case=bool(lower))


def neuron_view(text: str, text_b: str | None = None, *, name: str = DEFAULT_ENCODER, path: str | Path | None = None,
                html_action: str = "view", **kwargs: Any) -> HTML | None:
    """`bertviz.neuron_view.show` drawn offline: for one head, each query and key vector and their product, on
    `text` (and `text_b` as the second segment). kwargs go to bertviz (layer, head, display_mode)."""
    from bertviz import neuron_view as bertviz_neuron_view

    _check_texts(text, text_b)
    model, tokenizer = neuron_model(name, path)
    html = bertviz_neuron_view.show(model, "bert", tokenizer, text, text_b, html_action="return", **kwargs).data
    return _show(offline_html(html), html_action)
