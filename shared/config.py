"""The one training configuration both implementations read."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from shared.errors import UserError

#: How the low-level loop runs its step. fit() is given the same compilation choice;
#: for "epoch" (the whole epoch as one XLA computation) that is steps_per_execution = one epoch.
MODES = ("eager", "graph", "xla", "epoch")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the tutorial's classifier; defaults are the tutorial's."""

    epochs: int = 5
    """Passes over the training set."""
    batch_size: int = 32
    """Images per gradient step (Keras' default batch size)."""
    learning_rate: float = 1e-3
    """Adam's learning rate (Keras' default for compile("adam"))."""
    hidden_units: int = 128
    """Width of the hidden Dense(relu) layer."""
    seed: int = 42
    """Seeds the initial weights and every epoch's data order."""
    limit: int | None = None
    """Train on the first N training images only (None: all 60,000)."""
    validation_split: float = 0.0
    """Fraction of the training set held out for validation (taken from its end, never from the test set)."""
    mode: str = "graph"
    """eager: plain Python; graph: tf.function; xla: tf.function(jit_compile=True);
    epoch: a whole epoch compiled into one XLA computation (fit(): one execution per epoch)."""
    steps_per_execution: int = 1
    """fit()'s steps_per_execution: training steps per call of its compiled function."""
    mixed_precision: bool = False
    """float16 compute with float32 weights and a scaled loss (pays on GPUs only)."""
    strategy: str = "default"
    """tf.distribute strategy: default (one device), mirrored, multiworker ($TF_CONFIG)."""
    cpu_replicas: int = 1
    """mirrored without GPUs: how many logical CPU devices to mirror over."""

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs", self.epochs, "must be at least 1"),
            (self.batch_size >= 1, "batch-size", self.batch_size, "must be at least 1"),
            (
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                "lr",
                self.learning_rate,
                "must be a positive finite number",
            ),
            (self.hidden_units >= 1, "hidden-units", self.hidden_units, "must be at least 1"),
            (self.seed >= 0, "seed", self.seed, "must be 0 or more"),
            (self.limit is None or self.limit >= 1, "limit", self.limit, "must be at least 1"),
            (
                0.0 <= self.validation_split < 1.0,
                "validation-split",
                self.validation_split,
                "must be at least 0 and below 1",
            ),
            (self.mode in MODES, "mode", self.mode, f"must be one of {', '.join(MODES)}"),
            (self.strategy in ("default", "mirrored", "multiworker"), "strategy", self.strategy,
             "must be one of default, mirrored, multiworker"),
            (self.strategy == "default" or self.mode == "graph", "mode", self.mode,
             f"--strategy {self.strategy} runs with --mode graph only"),
            (self.cpu_replicas >= 1, "cpu-replicas", self.cpu_replicas, "must be at least 1"),
            (self.strategy == "default" or self.steps_per_execution == 1, "steps-per-execution",
             self.steps_per_execution, f"must be 1 with --strategy {self.strategy} (fit()'s "
             "multi-step function fails under MirroredStrategy with TF 2.21 / Keras 3.15)"),
            (self.steps_per_execution >= 1, "steps-per-execution", self.steps_per_execution,
             "must be at least 1"),
        ]
        for ok, option, value, what in checks:
            if not ok:
                raise UserError(f"--{option} {value}: {what}")

    @property
    def jit_compile(self) -> bool:
        """The XLA choice, stated explicitly for both sides (Keras' "auto" differs by machine)."""
        return self.mode in ("xla", "epoch")

    def to_dict(self) -> dict:
        """Plain dict for results.json."""
        return asdict(self)
