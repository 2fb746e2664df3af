"""What the attention views send to the browser: labkit's explorer against bertviz, at 64, 128 and 256 tokens.

    .venv/bin/python benchmarks/attention_view.py              # payload table, then the browser latency
    .venv/bin/python benchmarks/attention_view.py --no-browser # payload table only

For 6 layers × 12 heads (the packaged encoder's shape) and random attention of each length, prints the bytes of
(1) the explorer's first draw: the state of every widget it opens in the browser, JSON and binary buffers (the
attention once, one byte a weight, its rollout and the heads' statistics; the canvas's JavaScript; the controls),
(2) one redraw when the layer or head slider moves in the browser: what the kernel sends back (its echoes and the
Python-side caption; the canvas slices and draws by itself), (3) a checkpoint change, the one move that goes through
the kernel (that checkpoint's buffers), (4) bertviz's head view and model view as bertviz writes them, and (5) the
same through labkit's offline wrapper (libraries inline, weights rounded to 3 decimals).
Targets: first draw ≤ 1 MB at 64 tokens, ≤ 3 MB at 128.
Then the slider → redraw latency in a real browser at 64, 128 and 256 tokens (targets ≤ 50 ms at 128 tokens and
≤ 100 ms at 256, by keyboard and by mouse drag): the browser test that measures it (a fresh JupyterLab driven by
Playwright in Debian's chromium, tests/test_browser.py) runs, and its figures are printed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import torch

from labkit.viz.attention_explorer import AttentionExplorer
from labkit.viz.bertviz_views import head_view, model_view
from labkit.viz.view import sent_bytes

LAYERS, HEADS = 6, 12


def kb(n: int) -> str:
    return f"{n / 1000:,.1f} kB" if n < 10_000 else f"{n / 1000:,.0f} kB"


def kernel_sends(action: Callable[[], None]) -> int:
    """Bytes every widget sends to the browser while `action` runs (JSON and buffers of each message)."""
    sent: list[int] = []
    original = widgets.Widget._send

    def record(widget: widgets.Widget, msg: dict, buffers: list | None = None) -> None:
        sent.append(len(json.dumps(msg).encode()) + sum(memoryview(b).nbytes for b in buffers or ()))

    widgets.Widget._send = record
    try:
        action()
    finally:
        widgets.Widget._send = original
    return sum(sent)


def from_the_browser(explorer: AttentionExplorer, control: widgets.Widget, trait: str, value: int) -> None:
    """A slider moved in the browser: the canvas's message (set by the browser's link), then the slider's."""
    explorer.canvas.set_state({trait: value})
    control.set_state({"value": value})


def main() -> None:
    print(f"{'tokens':>6}  {'explorer first draw':>20}  {'one redraw':>10}  {'checkpoint':>10}  {'bertviz head':>12}  "
          f"{'bertviz model':>13}  {'labkit head':>11}  {'labkit model':>12}")
    for seq in (64, 128, 256):
        torch.manual_seed(0)
        attn = torch.randn(LAYERS, HEADS, seq, seq).softmax(-1)
        tokens = [f"w{i}" for i in range(seq)]
        run = {"step 0": attn, "step 1": torch.randn(LAYERS, HEADS, seq, seq).softmax(-1)}
        explorer = AttentionExplorer(attn, tokens, max_tokens=seq)
        first = sent_bytes(explorer.view, explorer.caption, *explorer.links)
        redraw = kernel_sends(lambda: from_the_browser(explorer, explorer.head, "head", 1))
        training = AttentionExplorer(run, tokens, max_tokens=seq)
        checkpoint = kernel_sends(lambda: setattr(training.checkpoint, "value", "step 1"))
        per_layer = tuple(layer[None] for layer in attn)

        from bertviz import head_view as bertviz_head_view, model_view as bertviz_model_view

        raw_head = len(bertviz_head_view(per_layer, tokens, html_action="return").data)
        raw_model = len(bertviz_model_view(per_layer, tokens, html_action="return").data)
        ours = [len(view(attn, tokens, html_action="return", max_tokens=seq).data) for view in (head_view, model_view)]
        print(f"{seq:>6}  {kb(first):>20}  {kb(redraw):>10}  {kb(checkpoint):>10}  {kb(raw_head):>12}  "
              f"{kb(raw_model):>13}  {kb(ours[0]):>11}  {kb(ours[1]):>12}")


def browser_latency() -> None:
    """Run the explorer's browser test and print the latency lines it measures (median of 5 key presses)."""
    test = Path(__file__).resolve().parent.parent / "tests" / "test_browser.py"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", str(test), "-k", "explorer_redraws"],
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("slider → redraw")]
    if done.returncode or not lines:
        print(f"\nthe browser test failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
        return
    print("\n" + "\n".join(lines) + "\n(targets ≤ 50 ms at 128 tokens, ≤ 100 ms at 256, by keyboard and by mouse)")


if __name__ == "__main__":
    main()
    if "--no-browser" not in sys.argv[1:]:
        browser_latency()
