"""Drawing and interaction: plotly figures and ipywidgets views. The math lives in labkit's other modules."""
