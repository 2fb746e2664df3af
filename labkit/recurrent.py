"""A recurrent baseline for the tiny GPT: a GRU character model of about the same size, trained the same way, and
what it costs to run.

A GRU reads a sequence one position at a time. Its state h_t (one vector of `hidden` numbers per layer) is computed
from the input at t and the state before it, so position t knows about positions 0..t-1 only through what
h_{t-1} kept, and step t cannot start before step t-1 has finished. Attention does the opposite: every position
reads every earlier one directly, and all positions are computed at once, in a few large matrix products.

    gru = GRULanguageModel(gru_matching(gpt.config))          # within 10% of the GPT's parameter count
    history = labkit.train.train(gru, corpus, recurrent_recipe(preset.train))  # the GPT's batches and steps
    table = step_time_table(gpt.config, gru.config, [64, 128, 256])          # ms per training step

PyTorch's GRU (`nn.GRU`, whose gates this module follows) computes, with σ the logistic function and ⊙ the
elementwise product:

    r = σ(W_ir x + b_ir + W_hr h + b_hr)            reset gate
    z = σ(W_iz x + b_iz + W_hz h + b_hz)            update gate
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))   candidate state
    h' = (1 - z) ⊙ n + z ⊙ h
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.blocks import count_parameters
from labkit.device import synchronize
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import TrainConfig
from labkit.validate import require_positive_int

__all__ = ["GRUConfig", "GRULanguageModel", "gru_parameter_count", "gru_matching", "MATCH_TOLERANCE",
           "recurrent_recipe", "step_time_table", "loss_by_position_range"]

MATCH_TOLERANCE = 0.10  # gru_matching's promise: the GRU's parameter count within 10% of the GPT's


@dataclass(frozen=True)
class GRUConfig:
    """The shape of a GRULanguageModel. block_size is the window it is trained on (the batches' length); the model
    itself runs on sequences of any length."""

    vocab_size: int
    block_size: int = 128
    d_embed: int = 128  # the token embedding's width, the GRU's input
    hidden: int = 256  # the state: all a layer carries from one position to the next
    n_layer: int = 1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "d_embed", "hidden", "n_layer"):
            require_positive_int(f"GRUConfig.{name}", getattr(self, name))

    def to_dict(self) -> dict:
        return asdict(self)


class GRULanguageModel(nn.Module):
    """idx (batch, seq) token ids → logits (batch, seq, vocab) for the next token at every position, as TinyGPT's:
    token embedding → `n_layer` GRU layers → output layer. The logits at t are read from the last layer's state h_t
    alone."""

    def __init__(self, config: GRUConfig) -> None:
        super().__init__()
        self.config = c = config
        self.token_emb = nn.Embedding(c.vocab_size, c.d_embed)
        self.gru = nn.GRU(c.d_embed, c.hidden, num_layers=c.n_layer, batch_first=True)
        self.head = nn.Linear(c.hidden, c.vocab_size)

    def states(self, idx: Tensor) -> Tensor:
        """idx (batch, seq) → the last layer's state at every position (batch, seq, hidden), from zero states."""
        return self.gru(self.token_emb(idx))[0]

    def forward(self, idx: Tensor) -> Tensor:
        return self.head(self.states(idx))

    def check_length(self, seq: int) -> None:
        """A recurrent model has no longest sequence: any positive length runs (TinyGPT's method of that name
        refuses lengths past its positions)."""
        require_positive_int("seq", seq)


def gru_parameter_count(config: GRUConfig) -> int:
    """The parameters of GRULanguageModel(config), by formula: the embedding V·E; per layer three gates, each with
    an input matrix (hidden × its input: E for the first layer, hidden above), a hidden matrix (hidden × hidden) and
    two bias vectors (b_i and b_h; PyTorch keeps both); the output layer hidden·V + V."""
    v, e, h, n = config.vocab_size, config.d_embed, config.hidden, config.n_layer
    layers = 3 * h * (e + h + 2) + (n - 1) * 3 * h * (2 * h + 2)
    return v * e + layers + h * v + v


def gru_matching(gpt_config: GPTConfig, *, n_layer: int = 1, d_embed: int | None = None) -> GRUConfig:
    """A GRUConfig with the GPT's vocabulary and block_size, `n_layer` layers, embeddings d_embed wide (default: the
    GPT's d_model), and the hidden size whose parameter count comes nearest TinyGPT(gpt_config)'s (within
    MATCH_TOLERANCE; ValueError where no hidden size gets there, e.g. when the embedding alone is too big)."""
    if not isinstance(gpt_config, GPTConfig):
        raise ValueError(f"gpt_config must be a labkit.models.GPTConfig, got {type(gpt_config).__name__}")
    require_positive_int("n_layer", n_layer)
    d_embed = gpt_config.d_model if d_embed is None else d_embed
    require_positive_int("d_embed", d_embed)
    target = count_parameters(TinyGPT(gpt_config))
    shape = GRUConfig(gpt_config.vocab_size, gpt_config.block_size, d_embed, hidden=1, n_layer=n_layer)
    hidden = 1  # the count grows with hidden: walk up to the last size at or below the target, then take the nearer
    while gru_parameter_count(replace(shape, hidden=hidden + 1)) <= target:
        hidden += 1
    config = min((replace(shape, hidden=h) for h in (hidden, hidden + 1)),
                 key=lambda c: abs(gru_parameter_count(c) - target))
    count = gru_parameter_count(config)
    if abs(count - target) > MATCH_TOLERANCE * target:
        raise ValueError(f"no GRU with n_layer={n_layer} and d_embed={d_embed} comes within "
                         f"{MATCH_TOLERANCE:.0%} of the GPT's {target:,} parameters (the nearest, hidden="
                         f"{config.hidden}, has {count:,}); choose a smaller d_embed or fewer layers")
    return config


def recurrent_recipe(config: TrainConfig) -> TrainConfig:
    """The GPT's TrainConfig for a GRU: the same steps, batches (seed), batch size, learning-rate schedule, clipping
    and evaluations, with AdamW where it says Muon (labkit's Muon trains the matrices of a transformer's `blocks`,
    which a GRU has not)."""
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a labkit.presets.TrainConfig, got {type(config).__name__}")
    return replace(config, optimizer="adamw") if config.optimizer == "muon" else config


def _training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> float:
    """Seconds for one forward, backward and AdamW step of `model` on the batch x, y (batch, seq)."""
    synchronize(x.device)
    start = time.perf_counter()
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(x.device)
    return time.perf_counter() - start


def step_time_table(gpt_config: GPTConfig, gru_config: GRUConfig, seq_lens: Sequence[int], *, batch_size: int = 16,
                    repeats: int = 3, device: torch.device | str = "cpu", seed: int = 0,
                    progress: bool = True) -> pd.DataFrame:
    """The milliseconds of one training step (forward, cross-entropy, backward, AdamW) of a TinyGPT of
    gpt_config's shape and a GRULanguageModel of gru_config's, on `batch_size` random windows of each length in
    seq_lens: the median of `repeats` steps per model and length, after one warm-up step each; in each repeat the
    two models run one after the other, so a slow moment of the machine hits both. The GPT is built with
    block_size = max(seq_lens) so that every length fits its positions. torch's random state is left as it was.

    Returns a DataFrame with one row per length: seq_len, gpt_ms, gru_ms and gru_over_gpt (their ratio).
    """
    if not isinstance(gpt_config, GPTConfig) or not isinstance(gru_config, GRUConfig):
        raise ValueError(f"gpt_config and gru_config must be a GPTConfig and a GRUConfig, got "
                         f"{type(gpt_config).__name__} and {type(gru_config).__name__}")
    if isinstance(seq_lens, (str, bytes)) or not isinstance(seq_lens, Sequence) or not seq_lens:
        raise ValueError(f"seq_lens must be a non-empty list of positive ints, got {seq_lens!r}")
    for seq_len in seq_lens:
        require_positive_int("seq_lens[i]", seq_len)
    if gru_config.vocab_size != gpt_config.vocab_size:
        raise ValueError(f"gru_config.vocab_size={gru_config.vocab_size} differs from gpt_config.vocab_size="
                         f"{gpt_config.vocab_size}: time the two models on the same vocabulary")
    require_positive_int("batch_size", batch_size)
    require_positive_int("repeats", repeats)
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        vocab = gpt_config.vocab_size
        models = {"gpt": TinyGPT(replace(gpt_config, block_size=max(seq_lens))).to(device),
                  "gru": GRULanguageModel(gru_config).to(device)}
        optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
        rows = []
        for seq_len in tqdm(list(seq_lens), desc="step time", disable=not progress):
            tokens = torch.randint(vocab, (batch_size, seq_len + 1), device=device)
            x, y = tokens[:, :-1], tokens[:, 1:]
            seconds: dict[str, list[float]] = {name: [] for name in models}
            for name, model in models.items():  # warm-up: the first step at a new length allocates
                _training_step(model, optimizers[name], x, y)
            for _ in range(repeats):
                for name, model in models.items():
                    seconds[name].append(_training_step(model, optimizers[name], x, y))
            gpt_ms, gru_ms = (1000 * statistics.median(seconds[name]) for name in ("gpt", "gru"))
            rows.append(dict(seq_len=seq_len, gpt_ms=gpt_ms, gru_ms=gru_ms, gru_over_gpt=gru_ms / gpt_ms))
    return pd.DataFrame(rows)


def loss_by_position_range(curves: Mapping[str, Tensor | Sequence[float]]) -> pd.DataFrame:
    """Per-position loss curves (name → (seq,), e.g. from `labkit.positional_workbench.loss_by_position`) averaged
    over doubling ranges of positions, 0, 1, 2-3, 4-7, 8-15, ... (the last range ends where the curves end): a
    position's own mean is noisy, a range's shows the trend. One row per range (its first and last position), one
    column per curve."""
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves must be a non-empty dict of name → per-position losses, got {curves!r}")
    values = {name: torch.as_tensor(curve, dtype=torch.float64) for name, curve in curves.items()}
    lengths = {name: tuple(v.shape) for name, v in values.items()}
    seq = next(iter(values.values())).shape
    if len(seq) != 1 or seq[0] == 0 or any(shape != seq for shape in lengths.values()):
        raise ValueError(f"curves must all be 1-D, non-empty and of one length, got shapes {lengths}")
    rows, first = [], 0
    while first < seq[0]:
        last = min(2 * first - 1, seq[0] - 1) if first else 0  # 0, then 1, 2-3, 4-7, ...
        rows.append(dict(first=first, last=last, **{name: float(v[first:last + 1].mean())
                                                    for name, v in values.items()}))
        first = last + 1
    return pd.DataFrame(rows)
