"""The lab's environment check: what runs here, what is missing, and how long each notebook will take.

    python -m labkit.doctor      # the report as a table; exit code 1 when something required is missing

`environment_report()` returns a `Report`: rows (`Check`) with a section, a name, a value, a status and, for anything
not ok, one line of advice. Status is "ok", "warn" (works, but not as well as it could) or "missing".

Required (the lab cannot run without them): Python 3.10 or newer, torch and a usable device, JupyterLab 4, ipykernel,
ipywidgets with a JupyterLab front-end (jupyterlab_widgets) that speaks its protocol and the front-end extensions on
disk, plotly and anywidget (plotly's FigureWidget is an anywidget). Everything else is optional, and its advice says
which notebook needs it. Nothing here touches the network: datasets are looked for in LABKIT_DATA only, models in
the Hugging Face cache only. The report takes about two seconds, most of it the speed probe.

Run times are estimates: each notebook's time on the reference machine (2 CPU cores), scaled by how fast a few
training steps of a TinyGPT run here compared with there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from labkit.presets import get_preset

__all__ = ["OK", "WARN", "MISSING", "Check", "Report", "WIDGET_FRONTENDS", "widget_mismatch", "NotebookTime",
           "NOTEBOOK_TIMES", "REFERENCE_PROBE_MS", "speed_probe", "python_checks", "torch_checks", "widget_checks",
           "asset_checks", "run_time_checks", "environment_report", "main"]

OK, WARN, MISSING = "ok", "warn", "missing"
_STATUSES = (OK, WARN, MISSING)
_GIB = 2**30


@dataclass(frozen=True)
class Check:
    """One row of the report. `advice` says what to do; every row that is not ok has some."""

    section: str
    name: str
    value: str
    status: str = OK
    advice: str = ""
    required: bool = False

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, got {self.status!r}")
        if self.status != OK and not self.advice:
            raise ValueError(f"the check {self.name!r} is {self.status} but gives no advice")


@dataclass(frozen=True)
class Report:
    """The environment as rows; `ok` when nothing required is missing."""

    checks: tuple[Check, ...]

    @property
    def missing_required(self) -> list[Check]:
        return [c for c in self.checks if c.required and c.status == MISSING]

    @property
    def ok(self) -> bool:
        return not self.missing_required

    def find(self, name: str) -> Check:
        """The row called `name`; KeyError naming the rows there are."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; the checks are: {', '.join(c.name for c in self.checks)}")

    def rows(self) -> list[dict[str, object]]:
        """One dict per row (section, name, value, status, advice, required), e.g. for `pandas.DataFrame`."""
        return [asdict(c) for c in self.checks]

    def table(self) -> str:
        """The report as aligned text, one block per section; advice on its own line under its row."""
        width = max(len(c.name) for c in self.checks)
        lines = ["labkit doctor: the lab's environment (* = required)"]
        for section in dict.fromkeys(c.section for c in self.checks):
            lines.append(f"\n{section}")
            for c in (c for c in self.checks if c.section == section):
                lines.append(f"  {c.status:<8}{'*' if c.required else ' '} {c.name:<{width}}  {c.value}")
                if c.advice:
                    lines.append(f"  {'':<10}{'':<{width}}  → {c.advice}")
        missing = self.missing_required
        lines.append("\n" + ("everything required is here" if not missing else
                             f"missing, and required: {', '.join(c.name for c in missing)}"))
        return "\n".join(lines)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _major(version: str) -> int | None:
    match = re.match(r"\s*v?(\d+)", version)
    return int(match.group(1)) if match else None


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / _GIB:.1f} GiB"


# ---------------------------------------------------------------------------------------------- python and torch


def python_checks() -> list[Check]:
    """The Python version (3.10 or newer is required; the lab is tested on 3.11) and the interpreter's path."""
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 10):
        row = Check("python", "Python", version, MISSING, "the lab needs Python 3.10 or newer (3.11 is tested)",
                    required=True)
    else:
        row = Check("python", "Python", version, required=True)
    return [row, Check("python", "executable", sys.executable)]


def torch_checks() -> list[Check]:
    """torch's version and build, the device labkit picks, CPU cores, free RAM and (on CUDA) free GPU memory."""
    version = _version("torch")
    if version is None:
        return [Check("torch", "torch", "not installed", MISSING, "run `python3 lab.py` once: it installs torch",
                      required=True)]
    import torch

    from labkit.device import available_memory, describe_device, pick_device

    rows = [Check("torch", "torch", torch.__version__, required=True)]
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
    if torch.version.cuda is None and shutil.which("nvidia-smi"):
        rows.append(Check("torch", "build", build, WARN, "this machine has an NVIDIA GPU but this torch cannot use "
                          "it: reinstall with LABKIT_TORCH set to the pip arguments PyTorch's selector gives"))
    else:
        rows.append(Check("torch", "build", build))
    try:
        device = pick_device()
    except (ValueError, RuntimeError) as error:
        rows.append(Check("torch", "device", "none", MISSING, f"{error}: unset LABKIT_DEVICE or name an available "
                          "device (cuda, mps or cpu)", required=True))
        device = torch.device("cpu")
    else:
        rows.append(Check("torch", "device", describe_device(device), required=True))
    cores = os.cpu_count() or 1
    if cores < 2:
        rows.append(Check("torch", "CPU cores", str(cores), WARN, "the CPU presets are sized for 2 cores: expect "
                          "training to take about twice as long"))
    else:
        rows.append(Check("torch", "CPU cores", str(cores)))
    ram = available_memory(torch.device("cpu"))
    if ram is None:
        rows.append(Check("torch", "free RAM", "unknown (no /proc/meminfo)"))
    elif ram < 4 * _GIB:
        rows.append(Check("torch", "free RAM", _gib(ram), WARN, "notebooks 05, 06 and 08 hold a pretrained encoder "
                          "and the datasets (notebook 06's kernel peaks at 2.5 GiB in fast mode, more with the full "
                          "presets): close other programs first"))
    else:
        rows.append(Check("torch", "free RAM", _gib(ram)))
    if device.type == "cuda":
        rows.append(Check("torch", "free GPU memory", _gib(available_memory(device))))
    return rows


# ---------------------------------------------------------------------------------------------- widgets

# The front-end packages that speak each ipywidgets major version's protocol (7: protocol 2.0, 8: protocol 2.1),
# by the major version of the front-end package: jupyterlab_widgets for JupyterLab, widgetsnbextension for the
# classic Notebook.
WIDGET_FRONTENDS: dict[int, dict[str, int]] = {
    7: {"jupyterlab_widgets": 1, "widgetsnbextension": 3},
    8: {"jupyterlab_widgets": 3, "widgetsnbextension": 4},
}
_FRONTEND_NAMES = ("jupyterlab_widgets", "widgetsnbextension")
_MATCHING_WIDGETS = ("install matching versions in the Python that runs JupyterLab (`pip install -U ipywidgets "
                     "jupyterlab_widgets`: ipywidgets pins its front-end), restart JupyterLab and reload the page")


def widget_mismatch(ipywidgets: str | None, frontend: str, frontend_version: str | None) -> str | None:
    """Why the kernel's ipywidgets (a version, None if not installed) and the front-end package `frontend`
    ("jupyterlab_widgets" or "widgetsnbextension") at `frontend_version` cannot draw widgets together; None when
    their major versions match (`WIDGET_FRONTENDS`)."""
    if frontend not in _FRONTEND_NAMES:
        raise ValueError(f"frontend must be one of {_FRONTEND_NAMES}, got {frontend!r}")
    for name, value in (("ipywidgets", ipywidgets), ("frontend_version", frontend_version)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a version string or None, got {value!r}")
    if ipywidgets is None:
        return "ipywidgets is not installed in the kernel's Python"
    kernel = _major(ipywidgets)
    if kernel not in WIDGET_FRONTENDS:
        return (f"ipywidgets {ipywidgets} is not a version this check knows (it knows "
                f"{', '.join(f'{k}.x' for k in WIDGET_FRONTENDS)})")
    wanted = WIDGET_FRONTENDS[kernel][frontend]
    if frontend_version is None:
        return f"{frontend} is not installed; ipywidgets {ipywidgets} needs {frontend} {wanted}.x"
    if _major(frontend_version) != wanted:
        return f"ipywidgets {ipywidgets} needs {frontend} {wanted}.x, but {frontend} {frontend_version} is installed"
    return None


def _labextension_version(name: str) -> tuple[str, Path] | None:
    """(version, folder) of the JupyterLab extension `name` on Jupyter's data path, the first one found."""
    from jupyter_core.paths import jupyter_path

    for folder in map(Path, jupyter_path("labextensions")):
        package = folder / name / "package.json"
        if package.is_file():
            return json.loads(package.read_text(encoding="utf-8"))["version"], folder
    return None


def _installed(section: str, package: str, what: str, install: str) -> Check:
    """A required package's row: its version, or missing with the advice `install`."""
    version = _version(package)
    if version is None:
        return Check(section, package, "not installed", MISSING, f"{what} needs it: {install}", required=True)
    return Check(section, package, version, required=True)


def widget_checks() -> list[Check]:
    """JupyterLab, the kernel, ipywidgets and its front-ends (versions and protocol match), anywidget and plotly."""
    setup = "run `python3 lab.py` (or `pip install -e .` in the lab's environment)"
    rows = []
    lab = _version("jupyterlab")
    if lab is None:
        rows.append(Check("widgets", "jupyterlab", "not installed", MISSING, f"the lab runs in JupyterLab: {setup}",
                          required=True))
    elif (_major(lab) or 0) < 4:
        rows.append(Check("widgets", "jupyterlab", lab, WARN, "the lab is tested with JupyterLab 4: "
                          "`pip install -U 'jupyterlab>=4.2'`", required=True))
    else:
        rows.append(Check("widgets", "jupyterlab", lab, required=True))
    rows.append(_installed("widgets", "ipykernel", "the notebooks' Python kernel", setup))
    kernel = _version("ipywidgets")
    if kernel is None:
        rows.append(Check("widgets", "ipywidgets", "not installed", MISSING, f"every slider and button: {setup}",
                          required=True))
    else:
        from ipywidgets._version import __protocol_version__

        rows.append(Check("widgets", "ipywidgets", f"{kernel} (widget protocol {__protocol_version__})",
                          required=True))
    for frontend, where, required in (("jupyterlab_widgets", "JupyterLab", True),
                                      ("widgetsnbextension", "the classic Notebook only", False)):
        version = _version(frontend)
        problem = widget_mismatch(kernel, frontend, version)
        value = f"{version or 'not installed'} ({where})"
        if problem is None:
            rows.append(Check("widgets", frontend, value + f": matches ipywidgets {_major(kernel or '')}",
                              required=required))
        else:
            rows.append(Check("widgets", frontend, value, MISSING if required else WARN,
                              f"{problem}: {_MATCHING_WIDGETS}", required=required))
    found = {name: _labextension_version(name) for name in ("@jupyter-widgets/jupyterlab-manager", "anywidget")}
    absent = [name for name, hit in found.items() if hit is None]
    if absent:
        rows.append(Check("widgets", "front-end extensions", f"{', '.join(absent)} not found", MISSING,
                          "JupyterLab draws no widget without them: reinstall jupyterlab_widgets and anywidget in "
                          "the Python that runs JupyterLab, restart JupyterLab and reload the page", required=True))
    else:
        folders = sorted({str(folder) for _, folder in found.values()})
        rows.append(Check("widgets", "front-end extensions", ", ".join(f"{name} {version}" for name, (version, _)
                                                                      in found.items()) + f" in {', '.join(folders)}",
                          required=True))
    rows.append(_installed("widgets", "anywidget", "plotly's FigureWidget (every live figure)", setup))
    rows.append(_installed("widgets", "plotly", "every figure", setup))
    return rows


# ---------------------------------------------------------------------------------------------- offline assets

# Which notebooks read each dataset, and what they do without a local copy.
_DATASET_USERS = {
    "tinyshakespeare": "notebooks 04, 05, 07 and 08 read it; without it they try the hub, then Python's own "
                       "docs (not Shakespeare)",
    "sst2": "notebooks 05, 06 and 08 read it; without it they need the hub",
    "conll2003": "notebooks 05 and 06 read it; without it they need the hub",
}


def _dataset_checks() -> list[Check]:
    from labkit.data import DATASETS, local_copy

    env = os.environ.get("LABKIT_DATA", "").strip()
    folder = Path(env).expanduser() if env else None
    if folder is None:
        rows = [Check("assets", "LABKIT_DATA", "not set", WARN, "point LABKIT_DATA at a folder with one subfolder "
                      "per dataset (tinyshakespeare/, sst2/, conll2003/) to work offline")]
    elif not folder.is_dir():
        rows = [Check("assets", "LABKIT_DATA", env, WARN, f"{folder} is not a folder: point LABKIT_DATA at the "
                      "folder that holds tinyshakespeare/, sst2/ and conll2003/")]
    else:
        rows = [Check("assets", "LABKIT_DATA", str(folder))]
    for info in DATASETS.values():
        found = local_copy(info, folder, allow_parent=False) if folder is not None and folder.is_dir() else None
        if found is not None:
            rows.append(Check("assets", info.name, str(found)))
            continue
        expected = ", ".join(f"{info.name}/{f}" for f in info.files.values())
        rows.append(Check("assets", info.name, "not in LABKIT_DATA", MISSING,
                          f"{_DATASET_USERS[info.name]}. Put {expected} under LABKIT_DATA"))
    return rows


def _model_checks() -> list[Check]:
    from labkit.assets import hub_cache_dir, packaged_encoder_dir

    try:
        rows = [Check("assets", "packaged encoder", str(packaged_encoder_dir()))]
    except FileNotFoundError as error:
        rows = [Check("assets", "packaged encoder", "not installed", MISSING, f"notebooks 05, 06 and 08 need a "
                      f"pretrained encoder offline, and {error}")]
    cache = hub_cache_dir()
    cached = sorted(d.name.removeprefix("models--").replace("--", "/") for d in cache.glob("models--*") if d.is_dir())
    if cached:
        rows.append(Check("assets", "Hugging Face cache", f"{', '.join(cached)} in {cache}"))
    else:
        rows.append(Check("assets", "Hugging Face cache", f"no models in {cache}", MISSING, "optional: offline the "
                          "packaged encoder stands in for BERT; notebook 07's GPT-2 section needs gpt2 cached or the "
                          "hub"))
    return rows


def _browser_checks() -> list[Check]:
    from labkit.js_assets import LIBRARIES

    absent = [f"{lib.name} {lib.version}" for lib in LIBRARIES.values() if not lib.path.exists()]
    if absent:
        rows = [Check("assets", "bertviz JavaScript", f"{', '.join(absent)} missing", MISSING, "notebook 08's bertviz "
                      "views draw nothing without them: run `python -m labkit.js_assets` once while online")]
    else:
        rows = [Check("assets", "bertviz JavaScript", ", ".join(f"{lib.name} {lib.version}"
                                                                for lib in LIBRARIES.values()))]
    chromium = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")
    playwright = find_spec("playwright") is not None
    if Path(chromium).exists() and playwright:
        rows.append(Check("assets", "browser tests", f"chromium at {chromium}, playwright {_version('playwright')}"))
    else:
        absent = [what for what, there in ((f"chromium at {chromium}", Path(chromium).exists()),
                                           ("playwright", playwright)) if not there]
        rows.append(Check("assets", "browser tests", f"no {' and no '.join(absent)}", MISSING, "optional: only "
                          "tests/test_browser.py needs them; `python3 lab.py test` installs both"))
    return rows


def asset_checks() -> list[Check]:
    """The datasets in LABKIT_DATA, the packaged encoder, the Hugging Face cache's models, bertviz's JavaScript
    files and chromium for the browser tests: all looked for on disk, never on the network."""
    return _dataset_checks() + _model_checks() + _browser_checks()


# ---------------------------------------------------------------------------------------------- run times


@dataclass(frozen=True)
class NotebookTime:
    """A notebook's run time top to bottom on the reference machine (2 CPU cores): `fast_s` measured headless with
    LABKIT_FAST=1; the CPU presets add `training_s` (the presets' documented budgets), so `full_s` is the sum."""

    name: str
    fast_s: float
    training_s: float = 0.0

    @property
    def full_s(self) -> float:
        return self.fast_s + self.training_s


def _cpu_minutes(family: str) -> float:
    return get_preset(family, "cpu").minutes


# fast_s: measured headless with nbclient (LABKIT_FAST=1) on the reference machine, 2 CPU cores otherwise idle (the
# same notebooks took 5 to 15 times longer while other jobs shared the cores). training_s: the `cpu` presets'
# measured minutes (`labkit.presets`), plus what each notebook trains or scores beside them, measured: notebook 04's
# ladder (six rungs of 850 steps at half the preset's context) about 2 min, its GRU as long as its GPT, and the GRU's
# step-time table and loss by position about a minute; notebook 04b trains the tiny GPT twice (on characters and on
# BPE tokens); notebook 05's two 400-step MiniLM heads (about 0.15 s a step) and its three models evaluated on every
# held-out batch (about a minute); notebook 06 trains the sentiment model, the NER tagger twice (plain and with word
# shapes), the multi-task model and the span head, and its evaluations on the dev sets take about 3 minutes more;
# notebook 08 trains 300 sentiment steps; notebook 10 five workbench models; notebook 11 two attention-only models
# and its patching sweeps (under a second); notebook 12 seven runs of at most 45 s of training, plus their
# evaluations; notebook 13 trains the sentiment preset once more
# through plain `Trainer` and evaluates on both dev sets (about a minute). Notebooks 07, 11 and 13 train notebook 04's
# model only when its checkpoint is missing (5 min more), and notebook 13 notebook 05's and 06's models likewise
# (about 12 min more).
NOTEBOOK_TIMES: tuple[NotebookTime, ...] = (
    NotebookTime("00-environment-check", 8),
    NotebookTime("01-attention-step-by-step", 4),
    NotebookTime("02-positional-encoding", 5),
    NotebookTime("03-transformer-block", 4),
    NotebookTime("04-tiny-gpt", 18, 2 * 60 * _cpu_minutes("tiny_gpt") + 180),
    NotebookTime("04b-tokenization", 16, 2 * 60 * _cpu_minutes("tiny_gpt") + 30),
    NotebookTime("05-pretraining-objectives", 36, 60 * _cpu_minutes("pretraining") + 2 * 400 * 0.15 + 60),
    NotebookTime("06-fine-tuning-bert", 146, 60 * (_cpu_minutes("sentiment") + 2 * _cpu_minutes("ner")
                                                   + _cpu_minutes("multitask") + _cpu_minutes("qa")) + 180),
    NotebookTime("07-generation", 8),
    NotebookTime("08-looking-inside", 16, 60 * _cpu_minutes("sentiment") * 300 / 600),
    NotebookTime("09-encoder-decoder", 10, 60 * _cpu_minutes("encoder_decoder")),
    NotebookTime("10-positional-workbench", 10, 5 * 60 * _cpu_minutes("positional_workbench")),
    NotebookTime("11-circuits", 12, 2 * 60 * _cpu_minutes("induction") + 60),
    NotebookTime("12-speedrun", 15, 7 * 45 + 60),
    NotebookTime("13-your-models-everywhere", 35, 60 * _cpu_minutes("sentiment") + 60),
)


# speed_probe() on the reference machine, otherwise idle: the fastest of 15 runs (all within 68 to 72 ms).
REFERENCE_PROBE_MS = 68.0
_PROBE_BATCH = 8


def speed_probe(seconds: float = 1.0) -> float:
    """Milliseconds per training step (forward, backward, AdamW) of a TinyGPT of the CPU preset's shape on a batch
    of 8 × 128 characters, on one CPU thread: the fastest of the steps that fit in `seconds` after a warm-up step
    (on a machine so busy that none fits, the warm-up's time). One thread and the fastest step keep the figure
    steady while other programs use the cores (several threads sharing busy cores wait for each other); on a machine
    with more cores than the reference's two, the estimates are therefore on the long side. torch's thread count
    and random state are left as they were."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds <= 10:
        raise ValueError(f"seconds must be a number in (0, 10], got {seconds!r}")
    import torch

    from labkit.device import one_cpu_thread

    with one_cpu_thread(), torch.random.fork_rng(devices=[]):
        return _fastest_step(seconds) * 1000


def _fastest_step(seconds: float) -> float:
    """speed_probe's measurement, in seconds."""
    import torch
    import torch.nn.functional as F

    from labkit.models import GPTConfig, TinyGPT
    from labkit.presets import get_preset

    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=65, **get_preset("tiny_gpt", "cpu").shape))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 65, (_PROBE_BATCH, model.config.block_size + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]

    def timed_step() -> float:
        start = time.perf_counter()
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    deadline = time.perf_counter() + seconds
    warm_up = timed_step()  # the first step allocates: it counts only when no other step fits
    times = [timed_step()] if time.perf_counter() + warm_up < deadline else [warm_up]
    while time.perf_counter() + min(times) < deadline:
        times.append(timed_step())
    return min(times)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_time_checks(probe_ms: float, device_type: str = "cpu", fast: bool = False) -> list[Check]:
    """Each notebook's expected run time here: the reference time (fast mode when `fast`, else the CPU presets)
    times probe_ms / REFERENCE_PROBE_MS. On a GPU (`device_type` cuda or mps) the training notebooks use the GPU
    presets, which the CPU reference cannot time: they are listed as not estimated."""
    if not isinstance(probe_ms, (int, float)) or isinstance(probe_ms, bool) or not probe_ms > 0:
        raise ValueError(f"probe_ms must be a positive number of milliseconds, got {probe_ms!r}")
    scale = probe_ms / REFERENCE_PROBE_MS
    mode = "LABKIT_FAST=1" if fast else "full presets"
    rows = [Check("run times", "speed probe", f"{probe_ms:.0f} ms a training step on one thread (reference "
                  f"machine, 2 cores: {REFERENCE_PROBE_MS:.0f} ms): {1 / scale:.1f}× its speed; times below: {mode}, "
                  "estimates")]
    if device_type != "cpu":
        rows.append(Check("run times", "presets", f"{device_type}: the GPU presets apply (larger models, trained "
                          "on the GPU)"))
    for notebook in NOTEBOOK_TIMES:
        if device_type != "cpu" and notebook.training_s and not fast:
            rows.append(Check("run times", notebook.name, f"not estimated: trains with the {device_type} preset"))
            continue
        seconds = (notebook.fast_s if fast else notebook.full_s) * scale
        if seconds > 30 * 60:
            rows.append(Check("run times", notebook.name, f"≈ {_duration(seconds)}", WARN, "long on this machine: "
                              "LABKIT_FAST=1 trains for seconds instead (smaller models, rougher results)"))
        else:
            rows.append(Check("run times", notebook.name, f"≈ {_duration(seconds)}"))
    return rows


# ---------------------------------------------------------------------------------------------- the report


def environment_report(*, probe: bool = True) -> Report:
    """Every check above, in order; probe=False skips the speed probe (and with it the run-time estimates)."""
    checks = python_checks() + torch_checks() + widget_checks() + asset_checks()
    if probe and _version("torch") is not None:
        import torch

        from labkit.device import pick_device
        from labkit.presets import fast_mode

        try:
            device = pick_device()
        except (ValueError, RuntimeError):  # already reported by torch_checks
            device = torch.device("cpu")
        checks += run_time_checks(speed_probe(), device.type, fast=fast_mode())
    return Report(tuple(checks))


def main(argv: list[str] | None = None) -> int:
    """`python -m labkit.doctor`: print the report; 0 when everything required is there, else 1."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m labkit.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--no-probe", action="store_true", help="skip the speed probe and the run-time estimates")
    args = parser.parse_args(argv)
    report = environment_report(probe=not args.no_probe)
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
