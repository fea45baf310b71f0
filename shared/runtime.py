"""Importing TensorFlow quietly, seeding, and describing the machine.

TensorFlow is imported lazily (inside the commands that train): it costs seconds and hundreds of
MB, and ``--help`` or a mistyped option should answer before that.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys

from shared.distribute import configure_cpu_replicas
from shared.errors import UserError

#: Set to 1 to see TensorFlow's C++ log lines (CUDA probing, oneDNN notices) again.
SHOW_LOGS_ENV = "FIT_VS_TAPE_TF_LOGS"


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ logs before absl starts ignore
    TF_CPP_MIN_LOG_LEVEL, so the variable alone cannot hide them."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(device: str = "auto", cpu_replicas: int = 1, start: bool = True):
    """Import TensorFlow and initialise its devices without flooding the terminal.

    ``device``: "cpu" hides every GPU before TensorFlow starts (so Keras' automatic XLA choice is
    a CPU user's); "gpu" requires one; "auto" leaves TensorFlow's choice. ``cpu_replicas`` > 1
    splits the CPU into that many logical devices (for --strategy mirrored). ``start=False``
    leaves TensorFlow's runtime unstarted: MultiWorkerMirroredStrategy must be created before
    the first operation runs. Logs stay visible when
    ``$FIT_VS_TAPE_TF_LOGS=1`` or when the user set ``$TF_CPP_MIN_LOG_LEVEL`` themselves.
    """
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    if os.environ.get(SHOW_LOGS_ENV) == "1" or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import tensorflow as tf

        configure_cpu_replicas(tf, cpu_replicas)
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        with _native_stderr_silenced():
            import tensorflow as tf

            configure_cpu_replicas(tf, cpu_replicas)
            # Device discovery (CUDA probing on a CPU-only machine) logs too: do it here, once.
            tf.config.list_physical_devices()
            if start:
                tf.constant(0)
    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise UserError("--device gpu: TensorFlow sees no GPU on this machine")
    return tf


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow at once (keras.utils.set_random_seed)."""
    import keras

    keras.utils.set_random_seed(seed)


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions and hardware, for results.json and reports."""
    import keras
    import numpy as np
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name", device.name))
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "gpus": gpus,
    }
