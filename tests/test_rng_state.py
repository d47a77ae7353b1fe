"""Checkpointed random states: sampling generator, torch's CPU and every CUDA device."""

from __future__ import annotations

import logging

import torch

from fasterrcnn.checkpoint import load_checkpoint, save_checkpoint
from fasterrcnn.engine.rng import capture_rng_state, restore_rng_state


def draws(device: torch.device, sampling: torch.Generator) -> list:
    return [torch.rand(3, device=device).cpu(), torch.rand(3, generator=sampling), torch.rand(3)]


def test_capture_restore_round_trip_through_a_weights_only_file(tmp_path, device):
    sampling = torch.Generator().manual_seed(5)
    torch.rand(4, device=device)  # initialises CUDA on the cuda variant
    state = capture_rng_state(sampling)
    assert ("cuda" in state) == (device.type == "cuda")
    path = tmp_path / "rng.pth"
    save_checkpoint({"rng": state}, path)
    expected = draws(device, sampling)
    loaded = load_checkpoint(path)["rng"]  # torch.load(weights_only=True)
    restore_rng_state(loaded, sampling, str(path))
    for got, want in zip(draws(device, sampling), expected):
        assert torch.equal(got, want)


def test_cuda_states_without_cuda_are_reported_not_fatal(monkeypatch, caplog):
    sampling = torch.Generator().manual_seed(1)
    state = {
        "sampling": sampling.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": [torch.zeros(16, dtype=torch.uint8)],
    }
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    caplog.set_level(logging.INFO, logger="fasterrcnn.engine.rng")
    restore_rng_state(state, sampling, "run.pth")
    assert "run.pth holds CUDA random states; CUDA is not available here" in caplog.text
