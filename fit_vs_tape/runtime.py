"""Starting TensorFlow quietly, choosing devices and strategies, loading the data, describing
the machine.

TensorFlow is imported lazily (inside the commands that train): it costs seconds and hundreds of
MB, and ``--help``, a mistyped option or a wrong path should answer before that. Every import of
TensorFlow in the application goes through ``quiet_tensorflow()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from pathlib import Path

from fit_vs_tape.errors import UserError
from shared import data

#: Set to 1 to see TensorFlow's C++ log lines (CUDA probing, oneDNN notices, kernel warnings)
#: again; ``TF_CPP_MIN_LOG_LEVEL`` then decides, as TensorFlow documents.
SHOW_LOGS_ENV = "FIT_VS_TAPE_TF_LOGS"
LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
#: 2: errors and fatal only. TensorFlow's levels: 0 info, 1 warning, 2 error, 3 fatal.
QUIET_LEVEL = 2


#: Keras 3.15's debugging caps, read when Keras is imported (keras/src/backend/config.py): fit()
#: then trains fewer epochs or steps than asked, with only a warning; the loop reads neither.
KERAS_CAPS = ("KERAS_MAX_EPOCHS", "KERAS_MAX_STEPS_PER_EPOCH")


def refuse_keras_caps(environ: dict | None = None) -> None:
    """A one-line error if one of Keras' debugging caps is set: fit() would stop short of the
    loop (keras/src/backend/tensorflow/trainer.py TensorFlowTrainer.fit:
    `max_epochs = config.max_epochs()`) and the sides could not agree."""
    environ = os.environ if environ is None else environ
    for name in KERAS_CAPS:
        if environ.get(name, "").strip():
            raise UserError(f"{name}={environ[name]} is set: Keras' fit() would then train fewer "
                            f"epochs or steps than asked (the loop does not read it); unset it")


def quiet_log_level(environ: dict | None = None) -> None:
    """Make ``TF_CPP_MIN_LOG_LEVEL`` hide TensorFlow's info and warning lines, whatever it was:
    unset, empty (TensorFlow reads that as 0: everything), 0, 1 or not a number become 2; 2 and 3
    are kept. Nothing changes with ``$FIT_VS_TAPE_TF_LOGS=1``. Must run before TensorFlow's C++
    side first logs: it reads the variable once."""
    environ = os.environ if environ is None else environ
    if environ.get(SHOW_LOGS_ENV) == "1":
        return
    value = environ.get(LOG_LEVEL_ENV, "").strip()
    if not (value.isdigit() and int(value) >= QUIET_LEVEL):
        environ[LOG_LEVEL_ENV] = str(QUIET_LEVEL)


@contextlib.contextmanager
def quiet_tensorflow():
    """Import TensorFlow (and whatever starts its C++ side) inside this block without its log
    lines reaching the terminal, then or later, unless ``$FIT_VS_TAPE_TF_LOGS=1``.

    The lines written before absl's logging starts ignore ``TF_CPP_MIN_LOG_LEVEL``, whatever the
    user set it to, so file descriptor 2 goes to /dev/null for the duration. What TensorFlow logs
    later (a kernel's warning, such as SaveV2's on a full disk, before the program's own one-line
    error) obeys the variable, so ``quiet_log_level()`` sets it to at least 2 first.
    """
    if os.environ.get(SHOW_LOGS_ENV) == "1":
        yield
        return
    quiet_log_level()
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


def choose_device(device: str) -> None:
    """``cpu`` hides every GPU from TensorFlow; it must happen before TensorFlow is imported."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"


def import_tensorflow(device: str = "auto", cpu_replicas: int = 1, start: bool = True,
                      threads: int | None = None):
    """Import TensorFlow quietly and initialise its devices.

    ``device``: "cpu" hides every GPU before TensorFlow starts (so Keras' automatic XLA choice is
    a CPU user's); "gpu" requires one; "auto" leaves TensorFlow's choice. ``cpu_replicas`` > 1
    splits the CPU into that many logical devices (for --strategy mirrored). ``start=False``
    leaves TensorFlow's runtime unstarted: MultiWorkerMirroredStrategy must be created before
    the first operation runs. ``threads``: the size of TensorFlow's intra- and inter-op thread
    pools (bench speed's thread policy); None leaves TensorFlow's default.
    """
    choose_device(device)
    with quiet_tensorflow():
        import tensorflow as tf

        if threads:  # like logical devices, only before the runtime starts
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        if cpu_replicas > 1:  # logical devices can only be set up before the runtime starts
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)])
        # Device discovery (CUDA probing on a CPU-only machine) logs too: do it here, once.
        tf.config.list_physical_devices()
        if start:
            tf.constant(0)
    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise UserError("--device gpu: TensorFlow sees no GPU on this machine")
    return tf


def make_strategy(name: str, cpu_replicas: int = 1):
    """The tf.distribute strategy called ``name`` (one of shared.config.STRATEGIES), made once
    per process after ``import_tensorflow``."""
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # Without GPUs, mirror over the logical CPUs (--cpu-replicas), the way it is tested here.
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus[:cpu_replicas])
    if name == "multiworker":
        try:
            cluster = json.loads(os.environ.get("TF_CONFIG", ""))
            cluster["cluster"]["worker"], cluster["task"]["index"]
        except (ValueError, KeyError, TypeError):
            raise UserError("--strategy multiworker: $TF_CONFIG must hold "
                            '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}'
                            ) from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def load_dataset(data_dir: str | os.PathLike | None) -> data.FashionMNIST:
    """Find (or download) and load Fashion-MNIST; a missing, damaged or unreachable file is a
    UserError naming it. A download imports Keras quietly."""

    def fetch(url: str, filename: str, directory: Path) -> None:
        with quiet_tensorflow():
            import keras  # noqa: F401 - imported here, quietly, before keras_fetch needs it
        data.keras_fetch(url, filename, directory)

    try:
        return data.load(data_dir, fetch=fetch)
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None


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
