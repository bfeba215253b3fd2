"""``train.compile``: what compiles, and the eager fallback where compilation cannot work."""

from __future__ import annotations

import functools
import logging

import pytest
import torch

from rgfl.engine import compile as compile_module
from rgfl.engine.compile import compile_unavailable_reason, disable_compile, enable_compile
from rgfl.engine.train import train
from rgfl.model.detector import RotatedGFL
from tests.engine.helpers import requires_pipeline, tiny_config, train_records


def _tiny_detector() -> RotatedGFL:
    torch.manual_seed(0)
    return RotatedGFL(3, depth=18, pretrained="none", feat_channels=32, fpn_channels=32, stacked_convs=1)


def test_without_a_cxx_compiler_the_cpu_step_stays_eager(monkeypatch, caplog):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compile_module.shutil, "which", lambda name: None)
    assert "C++ compiler" in compile_unavailable_reason(torch.device("cpu"))
    detector = _tiny_detector()
    with caplog.at_level(logging.WARNING, logger="rgfl.engine.compile"):
        assert enable_compile(detector, torch.device("cpu")) is False
    assert "train.compile=true ignored: no C++ compiler" in caplog.text
    assert "loss_terms" not in detector.__dict__ and detector.head._compiled_call_impl is None


def test_enable_and_disable_keep_the_state_dict_keys():
    detector = _tiny_detector()
    keys = list(detector.state_dict())
    if compile_unavailable_reason(torch.device("cpu")) is not None:
        pytest.skip("torch.compile unavailable here")
    assert enable_compile(detector, torch.device("cpu"))
    assert list(detector.state_dict()) == keys  # checkpoints of compiled runs load into eager models
    assert detector.head._compiled_call_impl is not None and "loss_terms" in detector.__dict__
    disable_compile(detector)
    assert detector.head._compiled_call_impl is None and "loss_terms" not in detector.__dict__


@requires_pipeline
def test_a_failing_first_compiled_step_falls_back_to_eager_and_trains(tiny_split, tmp_path, monkeypatch, caplog):
    if compile_unavailable_reason(torch.device("cpu")) is not None:
        pytest.skip("torch.compile unavailable here")

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=broken_backend))
    eager_dir, compiled_dir = tmp_path / "eager", tmp_path / "compiled"
    overrides = {"schedule.epochs": 1}
    train(tiny_config(tiny_split, **overrides), eager_dir)
    with caplog.at_level(logging.WARNING):
        result = train(tiny_config(tiny_split, **overrides, **{"train.compile": True}), compiled_dir)
    assert result.status == "completed"
    assert "the first compiled step failed (BackendCompilerFailed" in caplog.text
    assert "training eagerly" in caplog.text
    # The failed step was run again eagerly: the same losses as a plain eager run.
    eager, compiled = train_records(eager_dir), train_records(compiled_dir)
    assert [r["iteration"] for r in compiled] == [r["iteration"] for r in eager] == [1, 2]
    for a, b in zip(eager, compiled):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
