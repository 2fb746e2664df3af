"""The lab's datasets: a notebook names one, and `load_data` finds it.

`load_data(name, path=None)` takes the first source that has the dataset and prints one line saying which:

1. `path`, when given: a folder laid out like `$LABKIT_DATA/<name>/` (or its parent), or for tinyshakespeare
   the text file itself. A `path` without the files is an error, never silently skipped;
2. `$LABKIT_DATA/<name>/`: `tinyshakespeare/input.txt`, `sst2/{train,dev}.tsv`, `conll2003/eng.{train,testa,testb}`;
3. the Hugging Face hub through `datasets.load_dataset(<hub name>)`, but only when `HF_HUB_OFFLINE` and
   `HF_DATASETS_OFFLINE` are unset and `hub_check` answers True within `HUB_TIMEOUT_S` seconds;
4. tinyshakespeare only: Python's own reference documentation (`pydoc_data.topics`, about 0.45 MB of English
   prose), with a notice that it is not Shakespeare.

Returns: tinyshakespeare → `str`; sst2 → `DatasetDict` (train, validation); conll2003 → `DatasetDict`
(train, validation, test). Local files are parsed in memory: nothing is cached on disk.

`load_from_hub(name)` reads a dataset the lab takes from the hub only (`HUB_ONLY`: SQuAD v1.1 for notebook 06's
question answering), or says within `HUB_TIMEOUT_S` seconds why it cannot, for the caller to fall back on its own.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "DataSource",
    "local_copy",
    "SST2_LABELS",
    "NER_TAGS",
    "POS_TAGS",
    "CHUNK_TAGS",
    "HUB_TIMEOUT_S",
    "hub_reachable",
    "hub_check",
    "offline_by_env",
    "hub_available",
    "data_source",
    "load_data",
    "HUB_ONLY",
    "load_from_hub",
]


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its hub name and its local files, as {split: file name}."""

    name: str
    hub_name: str
    files: dict[str, str]


DATASETS: dict[str, DatasetInfo] = {
    "tinyshakespeare": DatasetInfo("tinyshakespeare", "karpathy/tiny_shakespeare", {"text": "input.txt"}),
    "sst2": DatasetInfo("sst2", "stanfordnlp/sst2", {"train": "train.tsv", "validation": "dev.tsv"}),
    "conll2003": DatasetInfo("conll2003", "eriktks/conll2003",
                             {"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}),
}

# Datasets read from the hub only, by name → hub name: no local copy is looked for (and the doctor lists none).
HUB_ONLY = {"squad": "rajpurkar/squad"}

SST2_LABELS = ["negative", "positive"]
# The hub's label orders for eriktks/conll2003, so that local and hub data carry the same ids.
NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
POS_TAGS = ['"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR",
            "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$", "RB", "RBR", "RBS",
            "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB"]
CHUNK_TAGS = ["O"] + [f"{io}-{kind}" for kind in ("ADJP", "ADVP", "CONJP", "INTJ", "LST", "NP", "PP", "PRT",
                                                  "SBAR", "UCP", "VP") for io in ("B", "I")]

HUB_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------------------------- where to look


@dataclass(frozen=True)
class DataSource:
    """Where a dataset comes from: kind is "path", "LABKIT_DATA", "hub" or "stdlib"; where is a folder, file or name."""

    kind: str
    where: str

    def __str__(self) -> str:
        if self.kind == "hub":
            return f"the Hugging Face hub ({self.where})"
        if self.kind == "stdlib":
            return "Python's reference documentation (pydoc_data.topics) - NOT Shakespeare"
        return f"{self.kind} ({self.where})"


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """True if the hub (`HF_ENDPOINT`, default https://huggingface.co) answers an HTTP request within `timeout` s.

    Any answer counts, an error status too; a server that accepts the connection but stays silent does not.
    """
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint + "/api/models?limit=1", method="HEAD"),
                                    timeout=timeout):
            return True
    except urllib.error.HTTPError:  # it answered
        return True
    except (OSError, ValueError):  # refused, unresolved, timed out, or not a URL
        return False


# The reachability check `hub_available` calls; replace it (e.g. with monkeypatch) to simulate offline or online.
hub_check: Callable[[], bool] = hub_reachable


def offline_by_env() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE switches the hub off."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_available(timeout: float | None = None) -> bool:
    """Whether to try the hub: not when HF_*_OFFLINE is set, else `hub_check()`, given up on after `timeout` s.

    The check runs in a daemon thread, so even a check stuck in DNS cannot hold the caller longer than `timeout`.
    """
    if offline_by_env():
        return False
    timeout = HUB_TIMEOUT_S if timeout is None else timeout
    answer: list[bool] = []

    def run() -> None:
        try:
            answer.append(hub_check() is True)
        except Exception:  # a failing check means "not reachable"
            answer.append(False)

    thread = threading.Thread(target=run, name="labkit-hub-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer) and answer[0]


def _info(name: str) -> DatasetInfo:
    if not isinstance(name, str) or name.strip().lower() not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name.strip().lower()]


def local_copy(info: DatasetInfo, folder: Path, *, allow_parent: bool) -> Path | None:
    """The folder (or, for a one-file dataset, the file) under `folder` that holds all of `info`'s files."""
    if len(info.files) == 1 and folder.is_file():
        return folder
    candidates = [folder, folder / info.name] if allow_parent else [folder / info.name]
    for candidate in candidates:
        if all((candidate / f).is_file() for f in info.files.values()):
            return candidate / next(iter(info.files.values())) if len(info.files) == 1 else candidate
    return None


def _expected(info: DatasetInfo) -> str:
    return ", ".join(f"{info.name}/{f}" for f in info.files.values())


def data_source(name: str, path: str | os.PathLike | None = None) -> DataSource:
    """Which source `load_data(name, path)` would read, without reading it (may run the hub check)."""
    info = _info(name)
    if path is not None:
        found = local_copy(info, Path(path).expanduser(), allow_parent=True)
        if found is None:
            raise FileNotFoundError(f"path={str(path)!r} does not hold {info.name}: expected the files "
                                    f"{', '.join(info.files.values())} in it or in {info.name}/ below it")
        return DataSource("path", str(found))
    env = os.environ.get("LABKIT_DATA", "").strip()
    if env:
        found = local_copy(info, Path(env).expanduser(), allow_parent=False)
        if found is not None:
            return DataSource("LABKIT_DATA", str(found))
    if hub_available():
        return DataSource("hub", info.hub_name)
    if info.name == "tinyshakespeare":
        return DataSource("stdlib", "pydoc_data.topics")
    raise FileNotFoundError(_not_found_message(info, env))


def _not_found_message(info: DatasetInfo, env: str, hub_error: BaseException | None = None) -> str:
    where = f"LABKIT_DATA={env!r} has no {_expected(info)}" if env else "LABKIT_DATA is not set"
    if hub_error is not None:
        hub = f"loading {info.hub_name!r} from the Hugging Face hub failed ({hub_error})"
    elif offline_by_env():
        hub = f"the Hugging Face hub ({info.hub_name!r}) is switched off by HF_HUB_OFFLINE / HF_DATASETS_OFFLINE"
    else:
        hub = f"the Hugging Face hub ({info.hub_name!r}) cannot be reached"
    return (f"no copy of {info.name!r} found: {where}, and {hub}. Point LABKIT_DATA at a folder holding "
            f"{_expected(info)}, pass path=..., or go online so that datasets.load_dataset({info.hub_name!r}) works.")


# ---------------------------------------------------------------------------------------------- readers


def _read_utf8(file: Path) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{file}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
                         "expected the dataset's files as published") from None


def _lines(file: Path) -> list[str]:
    return _read_utf8(file).replace("\r\n", "\n").split("\n")


def _read_text(file: Path) -> str:
    text = _read_utf8(file)
    if not text:
        raise ValueError(f"{file}: the file is empty, expected the corpus text")
    return text


def _read_sst2(file: Path) -> dict[str, list]:
    """{idx, sentence, label} columns from a `sentence<TAB>label` file with a header line."""
    lines = _lines(file)
    if lines[0] != "sentence\tlabel":
        raise ValueError(f"{file}, line 1: expected the header 'sentence<TAB>label', got {lines[0][:60]!r}")
    if lines[-1] == "":
        lines.pop()
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{file}, line {number}: expected 2 tab-separated columns (sentence, label), "
                             f"got {len(fields)}")
        if fields[1] not in ("0", "1"):
            raise ValueError(f"{file}, line {number}: label must be 0 (negative) or 1 (positive), got {fields[1]!r}")
        sentences.append(fields[0])
        labels.append(int(fields[1]))
    return {"idx": list(range(len(sentences))), "sentence": sentences, "label": labels}


def _read_conll(file: Path) -> dict[str, list]:
    """{id, tokens, pos_tags, chunk_tags, ner_tags} columns, one row per sentence, tags coded as the hub codes them."""
    codes = [("POS", {t: i for i, t in enumerate(POS_TAGS)}), ("chunk", {t: i for i, t in enumerate(CHUNK_TAGS)}),
             ("NER", {t: i for i, t in enumerate(NER_TAGS)})]
    columns: dict[str, list] = {"id": [], "tokens": [], "pos_tags": [], "chunk_tags": [], "ner_tags": []}
    sentence: list[list] = [[], [], [], []]

    def close_sentence() -> None:
        if sentence[0]:
            columns["id"].append(str(len(columns["id"])))
            for key, values in zip(("tokens", "pos_tags", "chunk_tags", "ner_tags"), sentence):
                columns[key].append(values)
            sentence[:] = [[], [], [], []]

    for number, line in enumerate(_lines(file), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            close_sentence()
            continue
        if len(fields) != 4:
            raise ValueError(f"{file}, line {number}: expected 4 space-separated columns (word POS chunk NER), "
                             f"got {len(fields)}: {line[:60]!r}")
        sentence[0].append(fields[0])
        for column, (what, table), tag in zip(sentence[1:], codes, fields[1:]):
            if tag not in table:
                raise ValueError(f"{file}, line {number}: unknown {what} tag {tag!r}; expected one of {list(table)}")
            column.append(table[tag])
    close_sentence()
    return columns


def _features(name: str) -> Any:
    from datasets import ClassLabel, Features, List, Value

    if name == "sst2":
        return Features({"idx": Value("int32"), "sentence": Value("string"), "label": ClassLabel(names=SST2_LABELS)})
    return Features({"id": Value("string"), "tokens": List(Value("string")),
                     "pos_tags": List(ClassLabel(names=POS_TAGS)), "chunk_tags": List(ClassLabel(names=CHUNK_TAGS)),
                     "ner_tags": List(ClassLabel(names=NER_TAGS))})


def _read_local(info: DatasetInfo, found: Path) -> Any:
    if info.name == "tinyshakespeare":
        return _read_text(found)
    from datasets import Dataset, DatasetDict

    reader = _read_sst2 if info.name == "sst2" else _read_conll
    features = _features(info.name)
    return DatasetDict({split: Dataset.from_dict(reader(found / file), features=features)
                        for split, file in info.files.items()})


def _load_from_hub(info: DatasetInfo) -> Any:
    """The hub's copy, trimmed to the same shape as the local one."""
    import datasets

    hub = datasets.load_dataset(info.hub_name)
    if info.name == "tinyshakespeare":  # one row of text per split
        return "".join(hub[split][0]["text"] for split in ("train", "validation", "test") if split in hub)
    return datasets.DatasetDict({split: hub[split] for split in info.files})


def _stdlib_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


_STDLIB_NOTICE = ("NOTICE: this is NOT Shakespeare. No copy of tinyshakespeare was found (no path, none under "
                  "LABKIT_DATA) and the Hugging Face hub could not be used, so the lab falls back on the one "
                  "English corpus every Python ships: its reference documentation (about 0.45 MB). A character "
                  "model learns from it just the same; set LABKIT_DATA for the real corpus.")


def load_data(name: str, path: str | os.PathLike | None = None) -> Any:
    """Load "tinyshakespeare" (→ str), "sst2" or "conll2003" (→ datasets.DatasetDict) from the first source that has it.

    sst2: splits train / validation (the GLUE dev set); columns idx, sentence, label (ClassLabel negative / positive).
    conll2003: splits train / validation (eng.testa) / test (eng.testb); columns id, tokens, and pos_tags,
    chunk_tags, ner_tags as ClassLabel-coded ints in the hub's label orders (`POS_TAGS`, `CHUNK_TAGS`, `NER_TAGS`);
    `-DOCSTART-` lines are skipped. Malformed local files raise ValueError naming the file and line.
    """
    info = _info(name)
    source = data_source(info.name, path)
    if source.kind == "hub":
        try:
            data = _load_from_hub(info)
        except Exception as exc:
            if info.name != "tinyshakespeare":
                env = os.environ.get("LABKIT_DATA", "").strip()
                raise FileNotFoundError(_not_found_message(info, env, hub_error=exc)) from exc
            print(f"labkit.data: loading {info.hub_name!r} from the hub failed ({exc})")
            source = DataSource("stdlib", "pydoc_data.topics")
        else:
            print(f"labkit.data: {info.name} from {source}")
            return data
    print(f"labkit.data: {info.name} from {source}")
    if source.kind == "stdlib":
        print(_STDLIB_NOTICE)
        return _stdlib_text()
    return _read_local(info, Path(source.where))


def load_from_hub(name: str) -> Any:
    """Load a dataset the lab reads from the hub only (`HUB_ONLY`; "squad": SQuAD v1.1, splits train and
    validation, columns id, title, context, question, answers {text, answer_start}) → `datasets.DatasetDict`.

    Only when `hub_available()` says so; otherwise FileNotFoundError saying why, within `HUB_TIMEOUT_S` seconds
    (at once with HF_HUB_OFFLINE set), so that the caller can fall back on data of its own. Prints the source.
    """
    if not isinstance(name, str) or name.strip().lower() not in HUB_ONLY:
        raise ValueError(f"name must be one of {sorted(HUB_ONLY)}, got {name!r}")
    name = name.strip().lower()
    hub_name = HUB_ONLY[name]
    if not hub_available():
        why = ("switched off by HF_HUB_OFFLINE / HF_DATASETS_OFFLINE" if offline_by_env()
               else f"not reachable within {HUB_TIMEOUT_S:g} s")
        raise FileNotFoundError(f"{name} is read from the Hugging Face hub only ({hub_name!r}), and the hub is {why}")
    import datasets

    try:
        hub = datasets.load_dataset(hub_name)
    except Exception as exc:
        raise FileNotFoundError(f"loading {hub_name!r} from the Hugging Face hub failed ({exc})") from exc
    print(f"labkit.data: {name} from {DataSource('hub', hub_name)}")
    return datasets.DatasetDict({split: hub[split] for split in ("train", "validation")})
