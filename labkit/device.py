"""Where the lab runs: pick the best device (CUDA → MPS → CPU) and make runs repeatable."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["pick_device", "describe_device", "bf16_is_fast", "available_memory", "set_seed", "one_cpu_thread",
           "synchronize"]

_KNOWN = ("cuda", "mps", "cpu")


def pick_device(prefer: str | None = None) -> torch.device:
    """The device to run on: `prefer` if given, else $LABKIT_DEVICE, else CUDA → MPS → CPU.

    Asking for a device that is not available raises instead of silently falling back.
    """
    choice = prefer or os.environ.get("LABKIT_DEVICE")
    if choice:
        kind = choice.split(":")[0]
        if kind not in _KNOWN:
            raise ValueError(f"device {choice!r} is not one of {', '.join(_KNOWN)}")
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was asked for, but torch sees no CUDA GPU")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {choice!r} was asked for, but MPS is not available")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """One line for a notebook to print: the device, and its name or thread count."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware, so that bf16 autocast makes training faster: a CUDA
    GPU that supports bf16 (Ampere and later), or a CPU with AVX-512 BF16 or AMX (recent Xeons and EPYCs; about 2×
    faster fine-tuning steps there than float32). Elsewhere bf16 would be emulated, slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on `device` (a CUDA GPU's free memory; the host's available RAM for the
    CPU), or None where that cannot be read (MPS, systems without /proc/meminfo)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu" and os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None


def set_seed(seed: int) -> int:
    """Seed Python, NumPy and torch (all devices) so that a run repeats; returns the seed."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


@contextmanager
def one_cpu_thread(device: torch.device | str = "cpu") -> Iterator[None]:
    """On the CPU, run torch on one thread for the duration, and put the thread count back after. For small models
    splitting an operation across threads costs more than it saves, and on a busy machine (other processes on the
    same cores) threads that wait for each other make a step many times slower (a seq2seq smoke step: 5 ms → 300 ms).
    Elsewhere it does nothing."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device | str) -> None:
    """Wait until `device` has finished the work queued on it (CUDA and MPS run asynchronously), so that a clock read
    next measures that work; nothing to wait for on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
