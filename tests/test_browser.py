"""The lab in a real browser: a fresh JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright.

Each test opens a notebook, runs all cells, checks that no JavaScript error reached the console, moves widgets
with the keyboard and the mouse and checks that the figures redraw. Screenshots go to artifacts/browser/. The
slider → redraw latency is printed (see also benchmarks/attention_view.py).

The README's test set-up installs chromium (apt) and Playwright (pip); without them these tests fail, they never
skip. `LABKIT_CHROMIUM` names another Chromium binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")
TOKEN = "labkit-browser-test"
# JupyterLab settings for a headless run: no news toast over the outputs, every cell in the DOM (no windowing),
# no autosave into the notebooks under test.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KERNEL_IDLE = '.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, the served folder): a fresh JupyterLab serving a scratch folder, stopped by its PID."""
    home = tmp_path_factory.mktemp("lab")
    served, settings = home / "notebooks", home / "settings"
    served.mkdir()
    for name, value in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port = _free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "LABKIT_FAST": os.environ.get("LABKIT_FAST", "1")}
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", f"--ServerApp.root_dir={served}", f"--IdentityProvider.token={TOKEN}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (home / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"JupyterLab exited:\n{(home / 'lab.log').read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.3)
        yield url, served
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Debian's chromium, headless, with a fresh profile."""
    assert Path(CHROMIUM).exists(), (f"no Chromium at {CHROMIUM}: `python3 lab.py test` installs Debian's "
                                     "(apt-get install chromium); or set LABKIT_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        yield context
        context.close()


class Notebook:
    """A notebook open in JupyterLab, with the console errors seen so far."""

    def __init__(self, context, url: str, name: str) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{url}/lab/tree/{name}?reset&token={TOKEN}")
        self.page.wait_for_selector(KERNEL_IDLE, timeout=60_000)

    def run_all(self, timeout_s: float = 60) -> None:
        page = self.page
        # A freshly opened notebook can drop a Run All sent while its kernel connects, all of it or only its later
        # cells (seen once in CI: the first cell ran, the second stayed "[ ]"); so wait until every cell is queued
        # ([*]) or done ([n]), and send Run All again if not.
        for attempt in range(3):
            page.click('.lm-MenuBar-itemLabel:text-is("Run")')
            page.click('.lm-Menu-item[data-command="runmenu:run-all"]')
            try:
                page.wait_for_function(
                    """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                               .every(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""", timeout=15_000)
                break
            except Exception:
                if attempt == 2:
                    raise
        try:
            page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
                }""", timeout=timeout_s * 1000)
        except Exception:
            self.screenshot("run-all-timed-out")
            raise
        page.wait_for_selector(KERNEL_IDLE, timeout=timeout_s * 1000)

    def cell_errors(self) -> list[str]:
        """The tracebacks in the outputs. JupyterLab 4 renders them as stderr, like warnings, so they are told apart
        by IPython's traceback header (a line of dashes) or Python's "Traceback (most recent call last)"."""
        stderr = self.page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
        return [text for text in stderr.all_inner_texts()
                if re.match(r"\s*-{20,}", text) or "Traceback (most recent call last)" in text]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def run_lab_notebook(lab, browser, name: str, timeout_s: float) -> Notebook:
    """Copy the lab's notebook `name` into the served folder, open it and run all its cells."""
    url, served = lab
    shutil.copy(ROOT / "notebooks" / name, served)
    notebook = Notebook(browser, url, name)
    notebook.run_all(timeout_s=timeout_s)
    return notebook


def write_notebook(folder: Path, name: str, *sources: str) -> str:
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                         "language": "python"}}), folder / name)
    return name


def explorer_cells(tokens: int) -> tuple[str, str]:
    """A notebook that shows the explorer on random attention: 6 layers × 12 heads × `tokens` tokens, all drawn."""
    return ("import torch\nfrom labkit.viz.attention_explorer import AttentionExplorer",
            f"torch.manual_seed(0)\nattn = torch.randn(6, 12, {tokens}, {tokens}).softmax(-1)\n"
            f"explorer = AttentionExplorer(attn, [f'w{{i}}' for i in range({tokens})], max_tokens={tokens})\nexplorer")


def heatmap_href(page) -> str:
    """The picture of the explorer's main heatmap (plotly draws a heatmap as one <image>)."""
    return page.locator(".js-plotly-plot").first.locator("g.hm image").get_attribute("href")


def redraw_ms(page, move) -> float:
    """Milliseconds from just before `move()` until the main heatmap's picture changed, timed in the page."""
    page.evaluate("""() => {
        const image = document.querySelector('.js-plotly-plot g.hm image');
        window.__labkitRedrawn = null;
        new MutationObserver((_, observer) => {
            window.__labkitRedrawn = performance.now();
            observer.disconnect();
        }).observe(image.parentNode, {subtree: true, attributes: true, childList: true});
        window.__labkitStart = performance.now();
    }""")
    move()
    page.wait_for_function("() => window.__labkitRedrawn !== null", timeout=10_000)
    return page.evaluate("() => window.__labkitRedrawn - window.__labkitStart")


@pytest.mark.parametrize("tokens", [64, 128])
def test_the_attention_explorer_redraws_when_its_sliders_move(lab, browser, tokens: int) -> None:
    url, served = lab
    notebook = Notebook(browser, url, write_notebook(served, f"explorer-{tokens}.ipynb", *explorer_cells(tokens)))
    notebook.run_all()
    page = notebook.page
    page.wait_for_selector(".js-plotly-plot g.hm image", timeout=60_000)
    assert not notebook.cell_errors()
    notebook.screenshot(f"explorer-{tokens}-first-draw")
    first = heatmap_href(page)

    head = page.locator(".widget-slider", has=page.locator("label", has_text="head")).first
    handle = head.locator(".noUi-handle")
    keyboard = []
    for _ in range(5):
        handle.focus()
        keyboard.append(redraw_ms(page, lambda: page.keyboard.press("ArrowRight")))
    assert heatmap_href(page) != first
    caption = page.locator(".widget-html-content b", has_text="layer").first
    assert "head 5" in caption.text_content()

    layer = page.locator(".widget-slider", has=page.locator("label", has_text="layer")).first
    box = layer.locator(".noUi-base").bounding_box()
    before = heatmap_href(page)

    def drag() -> None:
        page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()

    mouse = redraw_ms(page, drag)
    assert heatmap_href(page) != before
    assert "layer 0" not in caption.text_content()
    notebook.screenshot(f"explorer-{tokens}-after-sliders")
    print(f"\nslider → redraw in the browser, 6 layers × 12 heads × {tokens} tokens: keyboard "
          f"{sorted(keyboard)[len(keyboard) // 2]:.0f} ms (median of {len(keyboard)}), mouse drag {mouse:.0f} ms")
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"


BERTVIZ_CELLS = (
    "from labkit.assets import load_model, load_tokenizer\n"
    "from labkit.viz.bertviz_views import head_view, model_attention, model_view, neuron_view",
    "tokenizer, model = load_tokenizer(), load_model()\n"
    "attention, tokens = model_attention(model, tokenizer, 'The cat sat on the mat because it was tired.')",
    "head_view(attention, tokens)",
    "model_view(attention, tokens)",
    "neuron_view('The cat sat on the mat.', 'It was tired.')",
)


def test_bertviz_views_draw_offline_on_the_first_run(lab, browser) -> None:
    url, served = lab
    notebook = Notebook(browser, url, write_notebook(served, "bertviz.ipynb", *BERTVIZ_CELLS))
    notebook.run_all()
    page = notebook.page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    views = page.locator("div[id^='bertviz-']")
    assert views.count() == 3
    for i in range(3):  # each view draws its SVG from this one run: no re-run, no CDN
        views.nth(i).locator("svg").first.wait_for(timeout=20_000)
        assert views.nth(i).locator("svg rect, svg line, svg text").count() > 10
        views.nth(i).screenshot(path=str(ARTIFACTS / f"bertviz-{('head', 'model', 'neuron')[i]}-view.png"))
    assert page.locator("text=require is not defined").count() == 0
    notebook.screenshot("bertviz-first-run")
    assert not notebook.cell_errors()
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"


def test_notebook_08_runs_in_the_browser_with_every_view_drawn(lab, browser) -> None:
    notebook = run_lab_notebook(lab, browser, "08-looking-inside.ipynb", timeout_s=600)
    page = notebook.page
    views = page.locator("div[id^='bertviz-']")
    assert views.count() == 3
    for i in range(3):
        views.nth(i).locator("svg").first.wait_for(timeout=20_000)
    explorers = page.locator(".jp-OutputArea .js-plotly-plot g.hm image")
    assert explorers.count() >= 6  # three explorers, each a heatmap and a statistics heatmap
    notebook.screenshot("notebook-08")
    assert not notebook.cell_errors()
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"


def test_notebook_11_runs_in_the_browser_and_its_heads_can_be_ticked(lab, browser) -> None:
    notebook = run_lab_notebook(lab, browser, "11-circuits.ipynb", timeout_s=600)
    page = notebook.page
    heatmaps = page.locator(".jp-OutputArea .js-plotly-plot g.hm image")
    # the logit lens grid, two ablation maps, the explorer's map and statistics, two patching maps
    assert heatmaps.count() >= 7
    assert page.locator(".jp-OutputArea .widget-html-content", has_text="top 3 guesses at position").count() == 1
    loss = page.locator(".widget-html-content", has_text="heads ablated").first
    assert "none" in loss.text_content()
    page.locator(".widget-checkbox", has_text="L0H0").first.locator("input").check()
    page.wait_for_function("""() => [...document.querySelectorAll('.widget-html-content')]
                               .some(e => e.textContent.includes('heads ablated (zero): L0H0'))""", timeout=20_000)
    assert "change +" in loss.text_content() or "change -" in loss.text_content()
    notebook.screenshot("notebook-11")
    assert not notebook.cell_errors()
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"


def test_a_traceback_in_a_cell_is_seen(lab, browser) -> None:
    """The check the tests above rely on: an error in a cell shows up in cell_errors."""
    url, served = lab
    notebook = Notebook(browser, url, write_notebook(served, "broken.ipynb", "raise ValueError('labkit boom')"))
    notebook.run_all()
    assert any("labkit boom" in text for text in notebook.cell_errors())


def test_notebook_00_draws_a_slider_whose_label_and_figure_follow_it(lab, browser) -> None:
    notebook = run_lab_notebook(lab, browser, "00-environment-check.ipynb", timeout_s=120)
    page = notebook.page
    slider = page.locator(".jp-OutputArea .widget-slider").first
    slider.wait_for(state="visible", timeout=30_000)
    assert page.locator(".jp-OutputArea .jupyter-widgets").count() > 0
    outputs = page.locator(".jp-OutputArea")  # the notebook's own text names both failures, so outputs only
    assert outputs.filter(has_text="Error displaying widget").count() == 0
    assert outputs.filter(has_text="VBox(children=").count() == 0  # the text of a widget that did not draw
    label = page.locator(".jp-OutputArea .widget-label", has_text="²").first
    assert label.text_content() == "7² = 49"  # the value the notebook set last, from Python
    bars = page.locator(".jp-OutputArea .js-plotly-plot g.point path")
    bars.nth(10).wait_for(timeout=30_000)  # the FigureWidget drew its 11 bars

    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")  # 7 → 8 in the browser; the kernel's observers answer
    page.locator(".jp-OutputArea .widget-label", has_text="8² = 64").wait_for(timeout=10_000)
    page.wait_for_function("""() => {
        const bars = document.querySelectorAll('.jp-OutputArea .js-plotly-plot g.point path');
        return bars.length === 11 && bars[8].style.fill === 'rgb(197, 48, 48)'
            && bars[7].style.fill !== bars[8].style.fill;
    }""", timeout=10_000)
    notebook.screenshot("notebook-00")
    assert not notebook.cell_errors()
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"
