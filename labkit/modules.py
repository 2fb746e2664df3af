"""Small things every model in the lab shares: the label a loss leaves out, eval mode for a while, and GPT-2's /
BERT's initial weights. (The parameter count is `labkit.blocks.count_parameters`.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["IGNORE_INDEX", "eval_mode", "init_weights"]

# The label of a position (or an example) that carries no loss: F.cross_entropy's default ignore_index, and every
# Hugging Face model's. Masked-LM labels, NSP labels without a sentence pair, word pieces after a word's first.
IGNORE_INDEX = -100


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode (no dropout) for the block, then back in the mode it was in, even on an error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def init_weights(module: nn.Module) -> None:
    """GPT-2's and BERT's initialisation, for `model.apply`: every linear weight and embedding N(0, 0.02²), biases
    0, LayerNorms 1 and 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
