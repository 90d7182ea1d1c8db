from __future__ import annotations

import pytest
import torch

from genbench.schemas import TrainConfig

torch.set_num_threads(2)

#: A fast recipe for tests: digits MLPs fit every labeling within a few hundred steps.
FAST_TRAIN = TrainConfig(lr=0.1, schedule="constant", max_steps=3_000)


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store"


@pytest.fixture(autouse=True)
def _no_ambient_store(monkeypatch, tmp_path):
    """Tests never write ./genbench-results: the default store lives in tmp_path."""
    monkeypatch.setenv("GENBENCH_STORE", str(tmp_path / "default-store"))
    monkeypatch.delenv("GENBENCH_RAISE_ERRORS", raising=False)
    monkeypatch.delenv("GENBENCH_LOAD_PLUGINS", raising=False)
