"""labkit.data: source order (path → LABKIT_DATA → hub → stdlib), the real datasets' facts, and parse errors."""

import collections
import hashlib
import http.server
import shutil
import threading
import time
from pathlib import Path

import pytest

import labkit.data as data
from labkit.data import CHUNK_TAGS, DATASETS, NER_TAGS, POS_TAGS, data_source, load_data

SHA256 = {  # from the data folder's README
    "tinyshakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "sst2/train.tsv": "c75796b01672b41c38cd4b35f4ff1ade88ca79b7577f3926e01ff69739d85ec9",
    "sst2/dev.tsv": "db8f4a5951968681dadc4c6ddaf53e8ba31a1436574072c3fa6273a5d333b35a",
    "conll2003/eng.train": "3c896a8a35d0bc3d4b6a0a670b8e43d6c393afa574e0d21d89ff9ebf22a51d2e",
    "conll2003/eng.testa": "0379d8fd6227a856e32c7fc47e9c5bbd33775d275d76ba7918770e47853009b7",
    "conll2003/eng.testb": "cb3428000825467bb96b6d8b4e4acf0ad807af86be5c6f6b9144cf3e7c142526",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test starts offline and deterministic; a test that wants the hub says so."""
    for var in ("LABKIT_DATA", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(data, "hub_check", lambda: False)

    def never(info):
        raise AssertionError(f"test tried to load {info.hub_name} from the hub")

    monkeypatch.setattr(data, "_load_from_hub", never)


def _load_with_env(name: str, folder: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(folder))
        mp.setattr(data, "hub_check", lambda: False)
        return load_data(name)


@pytest.fixture(scope="module")
def sst2(data_dir):
    return _load_with_env("sst2", data_dir)


@pytest.fixture(scope="module")
def conll(data_dir):
    return _load_with_env("conll2003", data_dir)


# ---------------------------------------------------------------------------------------------- the real data


def test_tinyshakespeare_facts(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_DATA", str(data_dir))
    text = load_data("tinyshakespeare")
    assert capsys.readouterr().out == (f"labkit.data: tinyshakespeare from LABKIT_DATA "
                                       f"({data_dir / 'tinyshakespeare' / 'input.txt'})\n")
    assert isinstance(text, str) and len(text) == 1_115_394 and len(set(text)) == 65
    assert text.startswith("First Citizen")


def test_sst2_facts(sst2):
    assert set(sst2) == {"train", "validation"}
    train, dev = sst2["train"], sst2["validation"]
    assert (train.num_rows, dev.num_rows) == (67_349, 872)
    assert (sum(train["label"]), sum(dev["label"])) == (37_569, 444)
    assert train.features["label"].names == ["negative", "positive"]
    row = train[0]
    assert isinstance(row["sentence"], str) and row["sentence"] and row["label"] in (0, 1) and row["idx"] == 0


def test_conll2003_facts(conll):
    assert [conll[s].num_rows for s in ("train", "validation", "test")] == [14_041, 3_250, 3_453]
    features = conll["train"].features
    # the hub's label orders (eriktks/conll2003), written out so that a reordered constant fails here
    assert features["ner_tags"].feature.names == NER_TAGS == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC",
                                                              "I-LOC", "B-MISC", "I-MISC"]
    assert (len(POS_TAGS), POS_TAGS.index("NNP"), POS_TAGS.index("NN|SYM"), POS_TAGS[-1]) == (47, 22, 25, "WRB")
    assert (len(CHUNK_TAGS), CHUNK_TAGS.index("B-NP"), CHUNK_TAGS.index("I-VP")) == (23, 11, 22)
    assert features["pos_tags"].feature.names == POS_TAGS and features["chunk_tags"].feature.names == CHUNK_TAGS
    expected = {"train": (6_600, 7_140, 6_321, 3_438), "validation": (1_842, 1_837, 1_341, 922),
                "test": (1_617, 1_668, 1_661, 702)}
    for split, counts in expected.items():
        tags = collections.Counter(t for row in conll[split]["ner_tags"] for t in row)
        got = tuple(tags[NER_TAGS.index(f"B-{kind}")] for kind in ("PER", "LOC", "ORG", "MISC"))
        assert got == counts, split
    row = conll["train"][0]
    assert len(row["tokens"]) == len(row["pos_tags"]) == len(row["chunk_tags"]) == len(row["ner_tags"]) > 0
    assert all(isinstance(t, str) and " " not in t for t in row["tokens"])


@pytest.mark.parametrize("file", sorted(SHA256))
def test_files_match_readme_sha256(data_dir, file):
    assert hashlib.sha256((data_dir / file).read_bytes()).hexdigest() == SHA256[file]


# ---------------------------------------------------------------------------------------------- source order


def test_explicit_path_beats_labkit_data(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_DATA", str(data_dir))
    (tmp_path / "input.txt").write_text("To be, or not.\n", encoding="utf-8")
    assert load_data("tinyshakespeare", path=tmp_path) == "To be, or not.\n"
    assert capsys.readouterr().out == f"labkit.data: tinyshakespeare from path ({tmp_path / 'input.txt'})\n"
    assert load_data("tinyshakespeare", path=tmp_path / "input.txt") == "To be, or not.\n"
    assert data_source("tinyshakespeare").kind == "LABKIT_DATA"


def test_explicit_path_may_be_the_parent_folder(tmp_path):
    (tmp_path / "sst2").mkdir()
    for f in ("train.tsv", "dev.tsv"):
        (tmp_path / "sst2" / f).write_text("sentence\tlabel\ngood\t1\nbad\t0\n", encoding="utf-8")
    ds = load_data("sst2", path=tmp_path)
    assert ds["train"]["sentence"] == ["good", "bad"] and ds["validation"]["label"] == [1, 0]


def test_explicit_path_without_files_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path=.*train\.tsv, dev\.tsv"):
        load_data("sst2", path=tmp_path)


def test_offline_tinyshakespeare_falls_back_to_stdlib_docs(capsys):
    text = load_data("tinyshakespeare")
    out = capsys.readouterr().out
    assert out.startswith("labkit.data: tinyshakespeare from Python's reference documentation (pydoc_data.topics)")
    assert "NOT Shakespeare" in out and "LABKIT_DATA" in out
    assert 400_000 < len(text) < 600_000 and "First Citizen" not in text
    from pydoc_data.topics import topics
    first = sorted(topics)[0]
    assert text.startswith(topics[first])


@pytest.mark.parametrize("name", ["sst2", "conll2003"])
def test_offline_without_data_raises_clearly(name, capsys):
    with pytest.raises(FileNotFoundError) as err:
        load_data(name)
    message = str(err.value)
    assert "LABKIT_DATA" in message and DATASETS[name].hub_name in message
    assert all(f in message for f in DATASETS[name].files.values())
    assert capsys.readouterr().out == ""


def test_labkit_data_without_the_dataset_falls_through(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(tmp_path))
        with pytest.raises(FileNotFoundError, match=r"LABKIT_DATA='.*' has no conll2003/eng\.train"):
            load_data("conll2003")
        assert data_source("tinyshakespeare").kind == "stdlib"


@pytest.mark.parametrize("var,value", [("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "true")])
def test_offline_env_never_runs_the_hub_check(var, value, monkeypatch):
    calls = []
    monkeypatch.setattr(data, "hub_check", lambda: calls.append(1) or True)
    monkeypatch.setenv(var, value)
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_data("sst2")
    assert data_source("tinyshakespeare").kind == "stdlib"
    assert calls == []


def test_online_uses_the_hub(monkeypatch, capsys):
    monkeypatch.setattr(data, "hub_check", lambda: True)
    monkeypatch.setattr(data, "_load_from_hub", lambda info: f"hub copy of {info.hub_name}")
    assert data_source("sst2") == data.DataSource("hub", "stanfordnlp/sst2")
    assert load_data("sst2") == "hub copy of stanfordnlp/sst2"
    assert capsys.readouterr().out == "labkit.data: sst2 from the Hugging Face hub (stanfordnlp/sst2)\n"


def test_hub_failure_is_reported(monkeypatch, capsys):
    def broken(info):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(data, "hub_check", lambda: True)
    monkeypatch.setattr(data, "_load_from_hub", broken)
    with pytest.raises(FileNotFoundError, match="eriktks/conll2003.*connection reset"):
        load_data("conll2003")
    capsys.readouterr()
    assert load_data("tinyshakespeare").startswith(data._stdlib_text()[:100])
    out = capsys.readouterr().out
    assert "from the hub failed (connection reset)" in out and "NOT Shakespeare" in out


def test_slow_hub_check_is_cut_off(monkeypatch):
    assert data.HUB_TIMEOUT_S <= 5
    release = threading.Event()
    monkeypatch.setattr(data, "hub_check", lambda: release.wait(60) and True)
    monkeypatch.setattr(data, "HUB_TIMEOUT_S", 0.3)
    try:
        start = time.perf_counter()
        with pytest.raises(FileNotFoundError, match="cannot be reached"):
            load_data("sst2")
        assert time.perf_counter() - start < 2.0
    finally:
        release.set()


def test_a_raising_hub_check_means_offline(monkeypatch):
    monkeypatch.setattr(data, "hub_check", lambda: 1 / 0)
    assert data.hub_available() is False


def test_hub_reachable_needs_an_answer_not_just_a_connection(monkeypatch, silent_hub):
    monkeypatch.setenv("HF_ENDPOINT", silent_hub)  # accepts, never answers
    start = time.perf_counter()
    assert data.hub_reachable(timeout=0.5) is False
    assert time.perf_counter() - start < 2.0

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    try:
        assert data.hub_reachable(timeout=2.0) is True  # an error status is still an answer
    finally:
        server.shutdown()
        server.server_close()
    assert data.hub_reachable(timeout=1.0) is False  # closed now: refused


def test_a_silent_hub_is_given_up_on_within_the_bound(monkeypatch, silent_hub):
    monkeypatch.setenv("HF_ENDPOINT", silent_hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="cannot be reached"):
        load_data("sst2")
    assert time.perf_counter() - start < data.HUB_TIMEOUT_S + 1.5


@pytest.mark.parametrize("name", ["shakespeare", "SST-2", "", None])
def test_unknown_name_raises(name):
    with pytest.raises(ValueError, match=r"name must be one of \['conll2003', 'sst2', 'tinyshakespeare'\]"):
        load_data(name)


# ---------------------------------------------------------------------------------------------- malformed files

GOOD_SST2 = "sentence\tlabel\na fine film\t1\na dull one\t0\n"
GOOD_CONLL = "Ada NNP B-NP B-PER\nwrote VBD B-VP O\n. . O O\n\nParis NNP B-NP B-LOC\n"


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_synthetic_conll_parses(tmp_path):
    folder = _write(tmp_path / "c", {"eng.train": "-DOCSTART- -X- -X- O\n\n" + GOOD_CONLL,
                                     "eng.testa": GOOD_CONLL, "eng.testb": GOOD_CONLL + "\n\n"})
    ds = load_data("conll2003", path=folder)
    assert ds["train"]["tokens"] == [["Ada", "wrote", "."], ["Paris"]]
    assert ds["train"]["ner_tags"] == [[NER_TAGS.index("B-PER"), 0, 0], [NER_TAGS.index("B-LOC")]]
    assert ds["test"]["id"] == ["0", "1"]


@pytest.mark.parametrize("train,line,what", [
    ("sentence label\nok\t1\n", 1, "header"),
    ("sentence\tlabel\nok\t1\ntoo\tmany\t1\n", 3, "2 tab-separated columns"),
    ("sentence\tlabel\nok\t1\nno label here\n", 3, "2 tab-separated columns"),
    ("sentence\tlabel\nok\t1\nbad\t2\n", 3, "label must be 0"),
])
def test_malformed_sst2(tmp_path, train, line, what):
    folder = _write(tmp_path / "s", {"train.tsv": train, "dev.tsv": GOOD_SST2})
    with pytest.raises(ValueError) as err:
        load_data("sst2", path=folder)
    assert f"{folder / 'train.tsv'}, line {line}:" in str(err.value) and what in str(err.value)


@pytest.mark.parametrize("testb,line,what", [
    (GOOD_CONLL + "extra NN B-NP O O\n", 6, "4 space-separated columns"),
    ("Ada NNP B-NP\n", 1, "4 space-separated columns"),
    ("Ada NNP B-NP B-PERSON\n", 1, "unknown NER tag 'B-PERSON'"),
    ("Ada NOPE B-NP O\n", 1, "unknown POS tag 'NOPE'"),
])
def test_malformed_conll(tmp_path, testb, line, what):
    folder = _write(tmp_path / "c", {"eng.train": GOOD_CONLL, "eng.testa": GOOD_CONLL, "eng.testb": testb})
    with pytest.raises(ValueError) as err:
        load_data("conll2003", path=folder)
    assert f"{folder / 'eng.testb'}, line {line}:" in str(err.value) and what in str(err.value)


def test_empty_text_file_raises(tmp_path):
    (tmp_path / "input.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"input\.txt: the file is empty"):
        load_data("tinyshakespeare", path=tmp_path / "input.txt")


def test_real_copy_with_one_bad_line(data_dir, tmp_path):
    folder = tmp_path / "sst2"
    shutil.copytree(data_dir / "sst2", folder)
    (folder / "train.tsv").chmod(0o644)
    lines = (folder / "train.tsv").read_text(encoding="utf-8").split("\n")
    lines[10] = lines[10].rsplit("\t", 1)[0] + "\tpositive"
    (folder / "train.tsv").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.tsv, line 11: label must be 0 \(negative\) or 1 \(positive\)"):
        load_data("sst2", path=folder)


def test_text_that_is_not_utf8_names_file_and_line(tmp_path):
    (tmp_path / "input.txt").write_bytes(b"First Citizen:\nBefore we proceed\n\xff any further\n")
    with pytest.raises(ValueError, match=r"input\.txt, line 3: not UTF-8 text \(byte 0xff at offset 33\)"):
        load_data("tinyshakespeare", path=tmp_path / "input.txt")
