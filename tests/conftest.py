"""Shared fixtures: the real datasets, found through LABKIT_DATA (default: ../shared/data beside the repo), and a
small character model for the sampling and generation views."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LABKIT_DATA") or REPO.parent / "shared" / "data")
# Notebook kernels and subprocesses started by the tests read the same folder.
os.environ.setdefault("LABKIT_DATA", str(DATA_DIR))
# Exercises passed under the tests are recorded in a throw-away file, never in the user's own progress.
os.environ["LABKIT_PROGRESS"] = os.path.join(tempfile.mkdtemp(prefix="labkit-progress-"), "progress.json")


def require_data_dir() -> Path:
    """The data folder; a missing one fails under CI=true (never skipped there) and skips elsewhere."""
    if not DATA_DIR.is_dir():
        reason = f"the real datasets are missing: LABKIT_DATA / {DATA_DIR} is not a folder"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: this must not be skipped)")
        pytest.skip(reason)
    return DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data_dir()


@pytest.fixture(scope="session")
def shakespeare(data_dir: Path) -> str:
    return (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def char_tokenizer():
    """A character tokenizer of a two-line text."""
    from labkit.corpus import CharTokenizer

    return CharTokenizer.from_text("Low tide at noon: the boats lean on the mud,\n"
                                   "and a dog barks at every gull that lands. Quiet, then wind!\n")


@pytest.fixture(scope="session")
def char_model(char_tokenizer):
    """An untrained TinyGPT over char_tokenizer with context 16, its weights scaled up: GPT-2's init is near
    uniform, larger weights give a distribution worth filtering."""
    import torch

    from labkit.models import GPTConfig, TinyGPT

    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=char_tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2,
                              d_model=16))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model.eval()


@pytest.fixture(scope="session")
def silent_hub() -> Iterator[str]:
    """The URL of a hub that accepts every connection and never answers: the slow hub that must not hang the lab."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, name="silent-hub", daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


@pytest.fixture(scope="module")
def packaged_models_only() -> Iterator[None]:
    """Resolve models without asking the hub, for a module's tests: the packaged encoder (or a cached copy)
    answers at once."""
    import labkit.data

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(labkit.data, "hub_check", lambda: False)
        yield


@pytest.fixture(scope="module")
def packaged_tokenizer(packaged_models_only):
    """The packaged all-MiniLM-L6-v2's (uncased WordPiece) fast tokenizer."""
    from labkit.assets import PACKAGED_ENCODER, load_tokenizer

    return load_tokenizer(PACKAGED_ENCODER)
