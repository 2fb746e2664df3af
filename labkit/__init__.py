"""labkit: the helper package behind the transformer lab's notebooks.

Modules, one idea each: `device` (where to run, seeding), `masks`, `attention`, `positional`, and `viz`
(plotly figures and ipywidgets views; the math never lives there).
"""

__version__ = "0.1.0"
