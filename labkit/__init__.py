"""labkit: the helper package behind the transformer lab's notebooks. The layout, one job a module:

    from scratch     masks · attention · positional · blocks · models (TinyGPT, TinyBERT) · encoder_decoder ·
                     ladder
    pretrained       assets (a path → the cache → the hub → the packaged encoder) · pretraining · finetune,
                     finetune_data, finetune_metrics · word_shape
    looking inside   attention_stats (attention maps in numbers) · hooks (record, ablate, patch) · circuits
                     (direct logit attribution, induction, head ablation, activation patching)
    data             data (LABKIT_DATA → the hub) · corpus · pretraining_data · translation_data
    training         loop (the one training loop) · presets (TrainConfig; how big and how long, per device) ·
                     train (the tiny GPT and its command line) · trainer_setup (Hugging Face Trainer) · checkpoint ·
                     positional_workbench (five position schemes trained and compared) · speedrun (training
                     ideas raced over seeds)
    generating       generation (sampling, its settings, tokens as text to show)
    drawing          viz/ (plotly figures and ipywidgets views; they draw, the numbers come from the modules above)
    exercises        exercises/ (what the learner writes, each checked the moment it is written)
    the house        device · modules (eval_mode, init_weights, IGNORE_INDEX) · validate (argument checks) ·
                     compare (assert_close: a number beside its reference) · doctor · js_assets

One topic, one name: notebook 09's helpers are `encoder_decoder`, its exercises `exercises/encoder_decoder`. A new
notebook's helpers go in `labkit/<topic>.py`, its views in `labkit/viz/<topic>_widgets.py` (drawing only) and its
exercises in `labkit/exercises/<topic>.py`; it trains through `loop.run` with its sizes in `presets`.
"""

__version__ = "0.1.0"
