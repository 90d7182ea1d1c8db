"""The train stage's machinery: the stacked-ensemble trainer, closed-form fitting behind the same
``fit()``, the stacked forward, early stopping, augmentation and memory sizing."""

from genbench.training.closed_form import ClosedFormTrainer
from genbench.training.ensemble import EnsembleTrainer, MemberOutcome, build_initialized, learning_rate
from genbench.training.trainers import GradientTrainer, Trainer, trainer_for

__all__ = [
    "ClosedFormTrainer",
    "EnsembleTrainer",
    "GradientTrainer",
    "MemberOutcome",
    "Trainer",
    "build_initialized",
    "learning_rate",
    "trainer_for",
]
