"""What the attention views send to the browser: labkit's explorer against bertviz, at 64 and 128 tokens.

    .venv/bin/python benchmarks/attention_view.py              # payload table, then the browser latency
    .venv/bin/python benchmarks/attention_view.py --no-browser # payload table only

For 6 layers × 12 heads (the packaged encoder's shape) and random attention of each length, prints the bytes of
(1) the explorer's first draw (its two figures' data and layout, as JSON), (2) one redraw (the new map: a float32
buffer),
(3) bertviz's head view and model view as bertviz writes them, and (4) the same through labkit's offline wrapper
(libraries inline, weights rounded to 3 decimals). Target: at most 1 MB per output cell at 64 tokens.
Then the slider → redraw latency in a real browser at 64 and 128 tokens (target ≤ 100 ms at 64): the browser test
that measures it (a fresh JupyterLab driven by Playwright in Debian's chromium, tests/test_browser.py) runs, and its
figures are printed here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import plotly.io
import torch

from labkit.viz.attention_explorer import AttentionExplorer
from labkit.viz.bertviz_views import head_view, model_view

LAYERS, HEADS = 6, 12


def kb(n: int) -> str:
    return f"{n / 1000:,.0f} kB"


def main() -> None:
    print(f"{'tokens':>6}  {'explorer first draw':>20}  {'one redraw':>10}  {'bertviz head':>12}  "
          f"{'bertviz model':>13}  {'labkit head':>11}  {'labkit model':>12}")
    for seq in (64, 128):
        torch.manual_seed(0)
        attn = torch.randn(LAYERS, HEADS, seq, seq).softmax(-1)
        tokens = [f"w{i}" for i in range(seq)]
        explorer = AttentionExplorer(attn, tokens, max_tokens=seq)
        first = sum(len(plotly.io.to_json(fig)) for fig in (explorer.figure, explorer.stats_figure))
        explorer.head.value = 1
        redraw = explorer.figure.data[0].z.nbytes  # a float32 array goes to the browser as a binary buffer
        per_layer = tuple(layer[None] for layer in attn)

        from bertviz import head_view as bertviz_head_view, model_view as bertviz_model_view

        raw_head = len(bertviz_head_view(per_layer, tokens, html_action="return").data)
        raw_model = len(bertviz_model_view(per_layer, tokens, html_action="return").data)
        ours_head = len(head_view(attn, tokens, html_action="return").data)
        ours_model = len(model_view(attn, tokens, html_action="return").data)
        print(f"{seq:>6}  {kb(first):>20}  {kb(redraw):>10}  {kb(raw_head):>12}  {kb(raw_model):>13}  "
              f"{kb(ours_head):>11}  {kb(ours_model):>12}")


def browser_latency() -> None:
    """Run the explorer's browser test and print the latency lines it measures (median of 5 key presses)."""
    test = Path(__file__).resolve().parent.parent / "tests" / "test_browser.py"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", str(test), "-k", "explorer_redraws"],
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("slider → redraw")]
    if done.returncode or not lines:
        print(f"\nthe browser test failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
        return
    print("\n" + "\n".join(lines) + "\n(target ≤ 100 ms at 64 tokens)")


if __name__ == "__main__":
    main()
    if "--no-browser" not in sys.argv[1:]:
        browser_latency()
