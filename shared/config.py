"""The one training configuration every side reads, and the rules it must follow.

Every rule about what a setting may be lives here, once: ``TrainConfig`` checks itself when it is
made, and ``check_data`` checks it against the data it will train on. They raise ``ValueError``
naming the setting by its command-line option, so the command line and the Python API (a
notebook) give the same message. Which settings a side cannot run with is the side's to say.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from shared.data import CLASS_NAMES, split_sizes
from shared.order import steps_per_epoch

#: How the low-level loop runs its step. fit() is given the same compilation choice; for
#: "epoch" (the loop's whole epoch as one XLA computation) fit() gets steps_per_execution = one
#: epoch: one call per epoch of its tf.function while loop, each step in it an XLA computation.
MODES = ("eager", "graph", "xla", "epoch")
#: The models (shared/model.py): the tutorial's MLP, and that MLP with an L2 penalty, batch
#: norm and dropout.
MODELS = ("tutorial", "regularized")
#: tf.distribute strategies: one device, MirroredStrategy, MultiWorkerMirroredStrategy.
STRATEGIES = ("default", "mirrored", "multiworker")
#: Where to train: hide every GPU, require one, or TensorFlow's own choice.
DEVICES = ("cpu", "gpu", "auto")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the tutorial's classifier; defaults are the tutorial's.

    Made with a value a rule forbids, it raises ValueError("--option value: what is wrong").
    """

    epochs: int = 5
    """Passes over the training set."""
    batch_size: int = 32
    """Images per gradient step (Keras' default for arrays:
    keras/src/trainers/data_adapters/array_data_adapter.py ArrayDataAdapter.__init__:
    `if steps else 32`)."""
    learning_rate: float = 1e-3
    """Adam's learning rate (Keras' default, so compile("adam")'s:
    keras/src/optimizers/adam.py Adam.__init__: `learning_rate=0.001,`)."""
    model: str = "tutorial"
    """Which model (shared/model.py): "tutorial", the tutorial's MLP; "regularized", the same
    with an L2 weight penalty, BatchNormalization and Dropout."""
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
    """fit()'s steps_per_execution: training steps per call of its compiled function. fit() only:
    the loop runs one step per call, or a whole epoch in mode "epoch" (low_level/whole_epoch.py)."""
    mixed_precision: bool = False
    """float16 compute with float32 weights and a scaled loss (pays on GPUs only)."""
    strategy: str = "default"
    """tf.distribute strategy: default (one device), mirrored, multiworker ($TF_CONFIG)."""
    cpu_replicas: int = 1
    """mirrored without GPUs: how many logical CPU devices to mirror over."""
    class_weight: tuple[float, ...] | None = None
    """fit(class_weight=...): one weight per class, multiplying each image's training loss (not
    its accuracy, not in validation or evaluation: low_level/class_weight.py); None: all 1."""

    def __post_init__(self) -> None:
        if isinstance(self.class_weight, list):  # read back from results.json
            object.__setattr__(self, "class_weight", tuple(self.class_weight))
        distributed = self.strategy != "default"
        weights = self.class_weight
        rules = [
            (_whole(self.epochs, 1), "epochs", self.epochs, "must be at least 1"),
            (_whole(self.batch_size, 1), "batch-size", self.batch_size, "must be at least 1"),
            (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
             and self.learning_rate > 0, "lr", self.learning_rate, "must be a positive finite number"),
            (_whole(self.hidden_units, 1), "hidden-units", self.hidden_units, "must be at least 1"),
            (_whole(self.seed, 0), "seed", self.seed, "must be 0 or more"),
            (self.limit is None or _whole(self.limit, 1), "limit", self.limit, "must be at least 1"),
            (0.0 <= self.validation_split < 1.0, "validation-split", self.validation_split,
             "must be at least 0 and below 1"),
            (self.model in MODELS, "model", self.model, f"must be one of {', '.join(MODELS)}"),
            (self.mode in MODES, "mode", self.mode, f"must be one of {', '.join(MODES)}"),
            (self.strategy in STRATEGIES, "strategy", self.strategy,
             f"must be one of {', '.join(STRATEGIES)}"),
            (_whole(self.cpu_replicas, 1), "cpu-replicas", self.cpu_replicas, "must be at least 1"),
            (_whole(self.steps_per_execution, 1), "steps-per-execution", self.steps_per_execution,
             "must be at least 1"),
            (weights is None or (len(weights) == len(CLASS_NAMES) and all(
                isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in weights)
                and any(weights)), "class-weight", weights,
             f"needs {len(CLASS_NAMES)} finite weights of 0 or more, not all 0"),
            (not distributed or self.mode == "graph", "mode", self.mode,
             f"--strategy {self.strategy} runs with --mode graph only"),
            (not distributed or self.steps_per_execution == 1, "steps-per-execution",
             self.steps_per_execution, f"must be 1 with --strategy {self.strategy} (fit()'s "
             "multi-step function fails under MirroredStrategy with TF 2.21 / Keras 3.15)"),
        ]
        for ok, option, value, what in rules:
            if not ok:
                raise ValueError(f"--{option} {value}: {what}")

    def check_data(self, n_images: int) -> int:
        """Check the settings against a training set of ``n_images``; return how many images
        training gets after --limit and --validation-split (the data code's own arithmetic)."""
        if self.limit is not None and self.limit > n_images:
            raise ValueError(f"--limit {self.limit}: the training set has {n_images} images")
        n_train, n_val = split_sizes(self.limit or n_images, self.validation_split)
        if self.validation_split and (n_train < 1 or n_val < 1):
            raise ValueError(f"--validation-split {self.validation_split}: leaves {n_train} "
                             f"training and {n_val} validation images; both need at least one")
        if self.batch_size > n_train:
            raise ValueError(f"--batch-size {self.batch_size}: larger than the {n_train} "
                             "training images")
        self.check_steps(n_train)
        return n_train

    def check_steps(self, n_train: int) -> None:
        """Check --steps-per-execution against the steps of an epoch of ``n_train`` images.

        It must divide them. fit()'s epoch starts an execution at each of
        ``range(0, steps, steps_per_execution)`` (keras/src/trainers/epoch_iterator.py
        EpochIterator._enumerate_iterator: `for step in range(0, steps_per_epoch,
        self.steps_per_execution):`), and each execution runs all its steps while the iterator
        has batches (keras/src/backend/tensorflow/trainer.py TensorFlowTrainer._make_function:
        `tf.less(execution_step, self.steps_per_execution),`). So a last execution that does not
        fit runs on into the next epoch's batches: fit()'s epochs would hold other batches than
        the loop's, its per-epoch numbers would differ, and a checkpoint taken at an epoch's end
        would not be at one. Mode "epoch" sets it to one epoch, which always divides."""
        steps = steps_per_epoch(n_train, self.batch_size)
        if steps % self.execution_steps(n_train):
            fits = [d for d in range(1, steps + 1) if steps % d == 0]
            raise ValueError(
                f"--steps-per-execution {self.steps_per_execution}: must divide the {steps} steps "
                f"of an epoch ({', '.join(map(str, fits[:8]))}{', ...' if len(fits) > 8 else ''}); "
                "fit() would run its last execution on into the next epoch's batches")

    def class_weight_dict(self) -> dict[int, float] | None:
        """``class_weight`` as fit() takes it: class index -> weight."""
        return None if self.class_weight is None else dict(enumerate(self.class_weight))

    def execution_steps(self, n_train: int) -> int:
        """fit()'s steps_per_execution for an epoch of ``n_train`` images: the setting, or in
        mode "epoch" the whole epoch (one call of the compiled function per epoch)."""
        if self.mode == "epoch":
            return steps_per_epoch(n_train, self.batch_size)
        return self.steps_per_execution

    @property
    def jit_compile(self) -> bool:
        """The XLA choice, stated explicitly for every side (Keras' "auto" differs by machine)."""
        return self.mode in ("xla", "epoch")

    def to_dict(self) -> dict:
        """Plain dict for results.json."""
        return asdict(self)


def _whole(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
