"""labkit.device: choosing the device and seeding."""

import random

import numpy as np
import pytest
import torch

from labkit.device import bf16_is_fast, describe_device, one_cpu_thread, pick_device, set_seed


@pytest.fixture(autouse=True)
def _no_env_device(monkeypatch):
    monkeypatch.delenv("LABKIT_DEVICE", raising=False)


def no_accelerators(monkeypatch, cuda=False, mps=False):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_pick_cpu():
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "CPU", "cuda0"])
def test_unknown_device_raises(name):
    with pytest.raises(ValueError, match=f"device '{name}' is not one of cuda, mps, cpu"):
        pick_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_raises(name):
    with pytest.raises(RuntimeError, match="torch sees no CUDA GPU"):
        pick_device(name)


def test_unavailable_devices_raise_even_on_a_gpu_machine(monkeypatch):
    no_accelerators(monkeypatch)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(RuntimeError, match="MPS is not available"):
        pick_device("mps")


@pytest.mark.parametrize("cuda,mps,expected", [
    (True, True, "cuda"),
    (False, True, "mps"),
    (False, False, "cpu"),
])
def test_auto_order_is_cuda_mps_cpu(monkeypatch, cuda, mps, expected):
    no_accelerators(monkeypatch, cuda=cuda, mps=mps)
    assert pick_device().type == expected


def test_env_var_is_honoured(monkeypatch):
    no_accelerators(monkeypatch, cuda=True)  # auto would pick CUDA; the env var says CPU
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_env_var_is_checked(monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "quantum")
    with pytest.raises(ValueError, match="'quantum' is not one of"):
        pick_device()


def test_argument_beats_env_var(monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "quantum")
    assert pick_device("cpu") == torch.device("cpu")


def test_describe_cpu():
    assert describe_device(torch.device("cpu")) == f"cpu ({torch.get_num_threads()} threads)"


def draws():
    return random.random(), np.random.rand(), torch.randn(5)


def test_set_seed_repeats_draws():
    assert set_seed(123) == 123
    first = draws()
    set_seed(123)
    second = draws()
    assert first[:2] == second[:2]
    assert torch.equal(first[2], second[2])
    set_seed(124)
    assert not torch.equal(draws()[2], first[2])


def test_set_seed_accepts_large_seeds():
    set_seed(2**40)
    a = torch.randn(3)
    set_seed(2**40)
    assert torch.equal(torch.randn(3), a)


@pytest.mark.parametrize("seed", [-1, True, False, 1.5, "1"])
def test_set_seed_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        set_seed(seed)


def test_one_cpu_thread_runs_on_one_thread_and_puts_the_count_back() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_cpu_thread(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), one_cpu_thread("cpu"):  # also after an error inside
            raise RuntimeError
        assert torch.get_num_threads() == 2
        with one_cpu_thread(torch.device("meta")):  # not the CPU: left alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return set(next(line for line in f if line.startswith("flags")).split(":")[1].split())


def test_bf16_is_fast_reads_the_cpu_flags(monkeypatch) -> None:
    """The CPU's own flags (read here from /proc/cpuinfo) say whether it multiplies bf16: AVX-512 BF16 or AMX."""
    assert bf16_is_fast("cpu") == bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert bf16_is_fast(torch.device("mps")) is False and bf16_is_fast("meta") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bf16_is_fast("cuda") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert bf16_is_fast("cuda") is True
