"""What ``run`` and ``evaluate SPEC`` check before they create a store or print anything: that the
runs they would train can be trained here (the device exists, their data files are present and
readable, and each architecture takes its dataset's inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from genbench.errors import StoreError

if TYPE_CHECKING:
    from genbench.schemas import RunSpec


def runs_to_train(runs: list[RunSpec], store: Optional[Path]) -> list[RunSpec]:
    """The runs that the store at ``store`` lacks (or holds without their checkpoint files), as
    the train stage counts them; all of them when there is no store yet. The store is only read."""
    from genbench import api

    try:
        target = api.open_store(store, create=False)
    except StoreError:
        return list(runs)
    with target:
        done = target.checkpoints_present(target.finished_ids(run.run_id for run in runs))
    return [run for run in runs if run.run_id not in done]


def check_trainable(
    runs: list[RunSpec], store: Optional[Path], data_dir: Optional[Path], device: Optional[str] = None
) -> None:
    """Raise the error training would raise (a SpecError for an unknown or absent ``device`` or a
    model that cannot take its dataset's inputs, a DataError for a missing or truncated data file)
    before the store is created: the device is checked, then the first run of each training group
    the store lacks has its data prepared and, for a trainer that builds a network, its network
    built on that data's input shape, as the train stage sizes its ensembles. The loaders cache
    what they read, so training reads it once."""
    import torch

    from genbench.engine.data import prepare_data, run_trainer
    from genbench.inference import pick_device

    pick_device(device)
    seen: set[str] = set()
    for run in runs_to_train(runs, store):
        key = run.group_key()
        if key in seen:
            continue
        seen.add(key)
        dataset = prepare_data(run, str(data_dir) if data_dir else None)
        trainer = run_trainer(run, dataset, torch.device("cpu"))
        if trainer.memory_bound:
            trainer.build()
