"""labkit: the helper package behind the transformer lab's notebooks.

Modules, one idea each: `device` (where to run, seeding), `masks`, `attention`, `positional`, `blocks`, `models`
(TinyGPT, TinyBERT), `data` (datasets: path → LABKIT_DATA → hub), `assets` (pretrained models: path → cache → hub →
the packaged encoder), `corpus`, `train`, `generate`, `checkpoint`, `pretraining_data` and `pretraining` (masked-LM
and next-sentence objectives), `check`, and `viz` (plotly figures and ipywidgets views; the math never lives there).
"""

__version__ = "0.1.0"
