"""`assert_close`, the check every notebook prints."""

from __future__ import annotations

import pytest
import torch

from labkit.compare import assert_close


def test_prints_the_largest_difference(capsys: pytest.CaptureFixture[str]) -> None:
    assert_close("demo", torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 2.000002], dtype=torch.float64))
    assert capsys.readouterr().out.strip() == "✓ demo: max |difference| = 2.0e-06 (tolerance 1e-05)"


def test_fails_beyond_the_tolerance_and_on_nan() -> None:
    with pytest.raises(AssertionError, match=r"demo: max \|difference\| = 0.001 exceeds the tolerance 1e-05"):
        assert_close("demo", torch.zeros(3), torch.tensor([0.0, 0.001, 0.0]))
    with pytest.raises(AssertionError, match="nan exceeds"):
        assert_close("demo", torch.tensor([float("nan")]), torch.tensor([0.0]))


def test_fails_on_shape_mismatch() -> None:
    with pytest.raises(AssertionError, match=r"shapes differ: \(2,\) vs \(1, 2\)"):
        assert_close("demo", torch.zeros(2), torch.zeros(1, 2))
