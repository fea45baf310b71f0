"""tf.distribute strategies for both implementations: one device, mirrored, multi-worker.

fit() takes a strategy almost invisibly (build and compile the model under ``strategy.scope()``);
the loop has to distribute its dataset, run its step on every replica and reduce the results
(low_level/train.py). On a CPU-only machine ``mirrored`` can run on logical CPU devices
(``--cpu-replicas N``) so the whole path can be tested; the replicas share the same cores.
"""

from __future__ import annotations

import json
import os

from shared.errors import UserError

STRATEGIES = ("default", "mirrored", "multiworker")


def configure_cpu_replicas(tf, n: int) -> None:
    """Split the CPU into ``n`` logical devices; must run before TensorFlow starts its runtime."""
    if n <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def make_strategy(name: str, cpu_replicas: int = 1):
    """The tf.distribute strategy called ``name`` (TensorFlow must be imported already)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        if cpu_replicas > 1 and len(cpus) < cpu_replicas:
            raise UserError(f"--cpu-replicas {cpu_replicas}: TensorFlow has {len(cpus)} CPU devices")
        # Without GPUs, mirror over the logical CPUs (--cpu-replicas), the way it is tested here.
        return tf.distribute.MirroredStrategy(cpus[: max(cpu_replicas, 1)])
    if name == "multiworker":
        try:
            cluster = json.loads(os.environ.get("TF_CONFIG", ""))
            cluster["cluster"]["worker"], cluster["task"]["index"]
        except (ValueError, KeyError, TypeError):
            raise UserError("--strategy multiworker: $TF_CONFIG must hold "
                            '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}'
                            ) from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"--strategy {name}: must be one of {', '.join(STRATEGIES)}")
