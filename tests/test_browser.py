"""The lab in a real browser: a fresh JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright.

Each test opens a notebook, runs all cells, checks that no JavaScript error reached the console, moves widgets
with the keyboard and the mouse and checks that the figures redraw. Screenshots go to artifacts/browser/. The
attention explorer's slider → redraw latency is printed (see also benchmarks/attention_view.py), measured while
the kernel is busy: the explorer's canvas redraws in the browser alone. Its JavaScript is also checked on a blank page
against the explorer's Python (`current_map()` and the rest).

The README's test set-up installs chromium (apt) and Playwright (pip); without them these tests fail, they never
skip. `LABKIT_CHROMIUM` names another Chromium binary.
"""

from __future__ import annotations

import base64
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
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from labkit.viz.attention_canvas import AttentionCanvas
from labkit.viz.attention_explorer import AttentionExplorer

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
        self.start_all()
        self.wait_until_done(timeout_s)

    def start_all(self) -> None:
        """Send Run All and return once every cell is queued or done."""
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

    def wait_until_done(self, timeout_s: float) -> None:
        """Wait until every cell has run and the kernel is idle."""
        page = self.page
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


EXPLORER_MAP = ".jp-OutputArea .labkit-attention canvas.labkit-attention-map"
EXPLORER_STATISTICS = ".jp-OutputArea .labkit-attention canvas.labkit-attention-statistics"


def explorer_cells(tokens: int) -> tuple[str, str, str]:
    """A notebook that shows the explorer on random attention (6 layers × 12 heads × `tokens` tokens, all drawn),
    then keeps the kernel busy until a file named release-`tokens` appears beside it."""
    return ("import time\nfrom pathlib import Path\n\nimport torch\n"
            "from labkit.viz.attention_explorer import AttentionExplorer",
            f"torch.manual_seed(0)\nattn = torch.randn(6, 12, {tokens}, {tokens}).softmax(-1)\n"
            f"explorer = AttentionExplorer(attn, [f'w{{i}}' for i in range({tokens})], max_tokens={tokens})\nexplorer",
            f"while not Path('release-{tokens}').exists():\n    time.sleep(0.05)")


def picture(page) -> str:
    """The explorer's map as the canvas shows it (a PNG data URL)."""
    return page.locator(EXPLORER_MAP).first.evaluate("canvas => canvas.toDataURL()")


def redraw_ms(page, move) -> tuple[float, float]:
    """(milliseconds from just before `move()` until the explorer's canvas drew again (it counts its draws in its
    `data-drawn` attribute), the same from the last key or pointer event the page saw before that draw), timed in
    the page. The first includes Playwright sending the input; the second is the page's own part."""
    page.evaluate("""(selector) => {
        const canvas = document.querySelector(selector);
        window.__labkitRedrawn = null;
        window.__labkitInput = null;
        if (!window.__labkitListening) {
            for (const type of ['keydown', 'pointerdown', 'pointermove', 'mousemove']) {
                window.addEventListener(type, () => { window.__labkitInput = performance.now(); }, true);
            }
            window.__labkitListening = true;
        }
        new MutationObserver((_, observer) => {
            window.__labkitRedrawn = performance.now();
            window.__labkitInputBefore = window.__labkitInput;
            observer.disconnect();
        }).observe(canvas, {attributes: true, attributeFilter: ['data-drawn']});
        window.__labkitStart = performance.now();
    }""", EXPLORER_MAP)
    move()
    page.wait_for_function("() => window.__labkitRedrawn !== null", timeout=10_000)
    return tuple(page.evaluate("""() => [window.__labkitRedrawn - window.__labkitStart,
                                         window.__labkitRedrawn - window.__labkitInputBefore]"""))


@pytest.mark.parametrize("tokens", [64, 128, 256])
def test_the_attention_explorer_redraws_when_its_sliders_move(lab, browser, tokens: int) -> None:
    """Every slider move below happens while the kernel runs a busy loop: the canvas redraws in the browser alone."""
    url, served = lab
    notebook = Notebook(browser, url, write_notebook(served, f"explorer-{tokens}.ipynb", *explorer_cells(tokens)))
    notebook.start_all()
    page = notebook.page
    page.wait_for_selector(f"{EXPLORER_MAP}[data-drawn]", timeout=60_000)
    page.wait_for_selector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="busy"]', timeout=10_000)
    assert not notebook.cell_errors()
    notebook.screenshot(f"explorer-{tokens}-first-draw")
    title = page.locator(".jp-OutputArea .labkit-attention-title").first
    assert title.text_content() == "layer 0, head 0"
    first = picture(page)

    head = page.locator(".widget-slider", has=page.locator("label", has_text="head")).first
    handle = head.locator(".noUi-handle")
    keyboard = []
    for _ in range(5):
        handle.focus()
        keyboard.append(redraw_ms(page, lambda: page.keyboard.press("ArrowRight")))
    assert picture(page) != first
    assert title.text_content() == "layer 0, head 5"

    layer = page.locator(".widget-slider", has=page.locator("label", has_text="layer")).first
    box = layer.locator(".noUi-base").bounding_box()
    before = picture(page)

    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)  # press on the handle (layer 0): no change yet
    page.mouse.down()
    mouse = redraw_ms(page, lambda: page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2,
                                                    steps=5))
    page.mouse.up()
    assert picture(page) != before
    assert re.fullmatch(r"layer [1-5], head 5", title.text_content()), title.text_content()
    assert page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="busy"]').count() == 1
    notebook.screenshot(f"explorer-{tokens}-after-sliders")
    (served / f"release-{tokens}").touch()
    notebook.wait_until_done(timeout_s=60)
    assert not notebook.cell_errors()
    press, event = (sorted(times)[len(keyboard) // 2] for times in zip(*keyboard))
    print(f"\nslider → redraw in the browser, 6 layers × 12 heads × {tokens} tokens: keyboard {press:.0f} ms "
          f"(median of {len(keyboard)}), mouse drag {mouse[0]:.0f} ms; from the input event in the page: keyboard "
          f"{event:.0f} ms, mouse {mouse[1]:.0f} ms")
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"


# ---------------------------------------------- the canvas's JavaScript against the explorer's Python, on a blank page

STEP = 1 / 255  # one quantisation step of the bytes the canvas is sent
CANVAS_JS = ROOT / "labkit" / "viz" / "attention_canvas.js"


@pytest.fixture(scope="module")
def canvas_page(browser):
    """A blank page with the canvas's module loaded, its functions on `window.labkitCanvas`."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(type="module", content=CANVAS_JS.read_text() + (
        "\nwindow.labkitCanvas = {mapOf, layerMapsOf, statisticsOf, titleOf, render};"))
    page.wait_for_function("() => window.labkitCanvas !== undefined", timeout=10_000)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def canvas_state(explorer: AttentionExplorer) -> tuple[dict, list[str]]:
    """The canvas's traits as its model holds them in the browser, bytes as base64 (decoded in the page), and the
    names of the bytes."""
    state = {name: getattr(explorer.canvas, name) for name in AttentionCanvas.class_own_traits(sync=True)}
    binary = [name for name, value in state.items() if isinstance(value, bytes)]
    return {name: base64.b64encode(value).decode() if name in binary else value
            for name, value in state.items()}, binary


DECODE = """
    for (const name of binary) state[name] = Uint8Array.from(atob(state[name]), (c) => c.charCodeAt(0));"""
SLICE = """([state, binary]) => {""" + DECODE + """
    const canvas = window.labkitCanvas;
    const map = canvas.mapOf(state);
    const layer = canvas.layerMapsOf(state);
    return {error: map.error, queries: map.queries, keys: map.keys, values: map.values && Array.from(map.values),
            title: map.error ? null : canvas.titleOf(state, map.diverging),
            layer: layer && layer.maps.map((values) => Array.from(values)),
            statistics: Array.from(canvas.statisticsOf(state).values)};
}"""


def check_slices(page, explorer: AttentionExplorer) -> None:
    """The canvas's JavaScript, given the explorer's bytes and controls, draws what the explorer's Python says."""
    got = page.evaluate(SLICE, [*canvas_state(explorer)])
    values, queries, keys = explorer.current_map()
    assert got["error"] is None and (got["queries"], got["keys"]) == (queries, keys)
    np.testing.assert_allclose(np.reshape(got["values"], values.shape), values.numpy(), atol=STEP + 1e-6)
    assert got["title"] == explorer.shown_title
    np.testing.assert_allclose(np.reshape(got["layer"], explorer.layer_maps().shape), explorer.layer_maps().numpy(),
                               atol=STEP + 1e-6)
    np.testing.assert_allclose(np.reshape(got["statistics"], (explorer.n_layers, explorer.n_heads)),
                               explorer.statistics()[explorer.statistic.value].numpy(), atol=1e-5)


def softmaxed(*shape: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return (3 * torch.randn(*shape)).softmax(-1)


def test_the_canvas_slices_its_bytes_as_the_explorer_says(canvas_page) -> None:
    tokens = [f"t{i}" for i in range(10)]
    run = {"step 0": softmaxed(2, 3, 10, 10, seed=0), "step 5": softmaxed(2, 3, 10, 10, seed=1)}
    explorer = AttentionExplorer(run, tokens, reference=softmaxed(2, 3, 10, 10, seed=2), max_tokens=6,
                                 title="probe")
    check_slices(canvas_page, explorer)
    for control, value in ((explorer.layer, 1), (explorer.head, 2), (explorer.start, 3), (explorer.queries, (4, 1)),
                           (explorer.queries, (0, 9)), (explorer.checkpoint, "step 5"),
                           (explorer.statistic, "distance"), (explorer.difference, True)):
        control.value = value
        check_slices(canvas_page, explorer)
        for how in ("mean", "max", "rollout", "one head"):
            explorer.combine.value = how
            check_slices(canvas_page, explorer)
    explorer.head.max = 5
    explorer.head.value = 4
    got = canvas_page.evaluate(SLICE, [*canvas_state(explorer)])
    assert got["error"] == "head 4 is out of range: this model has 3 heads, numbered 0..2"


def test_the_canvas_slices_cross_attention_as_the_explorer_says(canvas_page) -> None:
    cross = softmaxed(2, 3, 5, 4, seed=3)
    explorer = AttentionExplorer(cross, list("abcde"), key_tokens=list("wxyz"), reference=cross.flip(-1),
                                 max_tokens=5)
    for control, value in ((explorer.layer, 1), (explorer.head, 1), (explorer.queries, (3, 0)),
                           (explorer.difference, True), (explorer.statistic, "share on punctuation")):
        control.value = value
        for how in ("mean", "max", "one head"):
            explorer.combine.value = how
            check_slices(canvas_page, explorer)


RENDER = """([state, binary, point]) => {""" + DECODE + """
    const el = document.createElement('div');
    document.body.replaceChildren(el);
    window.labkitCanvas.render({model: {get: (name) => state[name], on() {}, off() {}}, el});
    const canvas = el.querySelector('canvas.labkit-attention-map');
    const plot = canvas.plot;
    const box = canvas.getBoundingClientRect();
    const at = ([row, column]) => [plot.left + (column + 0.5) * plot.width / plot.nCols,
                                   plot.top + (row + 0.5) * plot.height / plot.nRows];
    const [x, y] = at(point);
    canvas.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + x, clientY: box.top + y}));
    const ratio = canvas.width / box.width;
    const pixel = ([row, column]) => {
        const [px, py] = at([row, column]);
        const data = canvas.getContext('2d').getImageData(Math.round(px * ratio), Math.round(py * ratio), 1, 1).data;
        return Array.from(data);
    };
    return {drawn: canvas.dataset.drawn, title: el.querySelector('.labkit-attention-title').textContent,
            readout: el.querySelector('.labkit-attention-readout').textContent,
            statistics: el.querySelector('.labkit-attention-statistics-title').textContent,
            grid: [el.querySelector('.labkit-attention-grid-title').textContent,
                   el.querySelectorAll('.labkit-attention-grid canvas').length],
            pixels: [[0, 0], [0, 1], [1, 0], [1, 1]].map(pixel)};
}"""


def test_the_canvas_draws_colours_labels_and_a_readout(canvas_page) -> None:
    """A 2-token map [[1, 0], [0.5, 0.5]]: darkest blue at 1, palest at 0; minus a reference of 0.5s it is red,
    blue and white (symmetric around 0); the readout names the cell under the pointer."""
    attn = torch.tensor([[1.0, 0.0], [0.5, 0.5]])[None, None]
    explorer = AttentionExplorer(attn, ["cat", "sat"], reference=torch.full_like(attn, 0.5), title="tiny")
    got = canvas_page.evaluate(RENDER, [*canvas_state(explorer), [1, 0]])
    assert got["drawn"] == "1" and got["title"] == "tiny: layer 0, head 0"
    assert got["readout"] == "query 1 (sat) → key 0 (cat): 0.502"  # 0.5 sent as the byte 128
    assert got["statistics"] == "entropy of every head" and got["grid"] == ["", 0]
    darkest, palest = [8, 48, 107, 255], [247, 251, 255, 255]
    assert got["pixels"][0] == darkest and got["pixels"][1] == palest
    assert got["pixels"][2] == got["pixels"][3] and got["pixels"][2] not in (darkest, palest)
    explorer.difference.value = explorer.grid_button.value = True
    got = canvas_page.evaluate(RENDER, [*canvas_state(explorer), [0, 0]])
    assert got["grid"] == ["layer 0: all 1 heads", 1]
    assert got["title"] == "tiny: layer 0, head 0 minus the reference"
    assert got["readout"] == "query 0 (cat) → key 0 (cat): 0.498"  # (255 - 128) / 255
    assert got["statistics"] == "entropy of every head (change from the reference)"
    red, blue, white = got["pixels"][0], got["pixels"][1], got["pixels"][2]
    assert red[0] > red[2] and blue[2] > blue[0] and white == [247, 247, 247, 255] == got["pixels"][3]


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
    for selector in (EXPLORER_MAP, EXPLORER_STATISTICS):  # three explorers, each drew its map and statistics
        page.wait_for_function("([s]) => [...document.querySelectorAll(s)].filter(c => c.dataset.drawn).length === 3",
                               arg=[selector], timeout=20_000)
    assert page.locator(".jp-OutputArea .labkit-attention-title", has_text="fine-tuned: layer").count() == 1
    notebook.screenshot("notebook-08")
    assert not notebook.cell_errors()
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"


def test_notebook_11_runs_in_the_browser_and_its_heads_can_be_ticked(lab, browser) -> None:
    notebook = run_lab_notebook(lab, browser, "11-circuits.ipynb", timeout_s=600)
    page = notebook.page
    heatmaps = page.locator(".jp-OutputArea .js-plotly-plot g.hm image")
    assert heatmaps.count() >= 5  # the logit lens grid, two ablation maps, two patching maps
    page.locator(f"{EXPLORER_MAP}[data-drawn]").wait_for(timeout=20_000)  # the explorer's map and statistics
    page.locator(f"{EXPLORER_STATISTICS}[data-drawn]").wait_for(timeout=20_000)
    assert page.locator(".jp-OutputArea .labkit-attention-title").first.text_content().startswith("induction: ")
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


def test_notebook_12_runs_in_the_browser_and_a_race_runs_from_its_button(lab, browser) -> None:
    notebook = run_lab_notebook(lab, browser, "12-speedrun.ipynb", timeout_s=600)
    page = notebook.page
    table = page.locator(".widget-html-content", has_text="seconds to val").first
    table.wait_for(timeout=20_000)
    assert "Welch's t" in table.text_content() or "no test" in table.text_content()
    page.locator(".widget-checkbox", has_text="+ muon").first.locator("input").uncheck()
    page.locator(".widget-checkbox", has_text="+ rope").first.locator("input").check()
    page.get_by_role("button", name="Race").click()
    racing = "racing plain recipe against + rope, + short warm-up"  # the switches in their table's order
    page.locator(".widget-html-content", has_text=racing).first.wait_for(timeout=20_000)
    page.wait_for_function("""() => { const b = [...document.querySelectorAll('button')]
                                        .find(b => b.textContent.includes('Race'));
                                      return b && !b.disabled; }""", timeout=120_000)
    traces = page.locator(".jp-OutputArea .js-plotly-plot").last.locator("g.scatterlayer g.trace")
    assert traces.count() == 4  # two arms × two seeds (fast mode), one line each
    notebook.screenshot("notebook-12")
    assert not notebook.cell_errors()
    assert not notebook.errors, f"JavaScript errors in the console: {notebook.errors}"
