"""How far a way of training is from what the machine can do, each measured in a process of
this module's own (``worker``): the model's parameters and training FLOPs, counted from the model
(``model_counts``), this machine's matmul peak, and each model's floor (bench speed runs them).

The FLOPs per training image (``training_flops_per_sample``) are those of the model's matmuls
(``matmuls``), per Dense layer: 2 x inputs x outputs forward (a multiply-add is 2 FLOPs), as many
for its weights' gradient, and as many for its input's gradient only where a layer before it
has trained weights (nobody asks for the images' gradient). For Flatten -> Dense(H) -> Dense(10):
4 x 784H + 60H, 409,088 at the tutorial's 128. That is what runs: TensorFlow's traced train step
holds exactly these 5 MatMuls (tests/test_peers.py reads them from the graph), JAX differentiates
the parameters only, PyTorch's input needs no gradient. Left out on purpose: biases, relu, batch
norm, dropout, softmax and loss (a few FLOPs per activation), Adam (about ten per parameter per
*batch*); a layer of any other kind is an error, not an undercount. The "6 x parameters" of MFU
figures counts the images' gradient too, 1.49x this (docs/benchmarks.md).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

#: The square float32 matmul that measures the peak: 2 * 2048^3 = 17.2 GFLOP per product.
PEAK_SIZE = 2048
PEAK_REPEATS = 10


@dataclass(frozen=True)
class Limit:
    """A measurement bench speed makes among its rows' processes (its ``Planned`` row)."""

    name: str
    implementation: ClassVar[str] = "limits"
    module: ClassVar[str] = "benchmarks.limits"


PEAK, FLOOR = Limit("peak"), Limit("floor")


def matmuls(model) -> list[tuple[int, int, bool]]:
    """Per image, each matmul of ``model`` (a built Keras model): (inputs, outputs, whether its
    input's gradient runs: only where a layer before it has trainable weights). A Dense layer on
    flat inputs holds one; Flatten, BatchNormalization and Dropout none (their few FLOPs per
    activation are left out); any other layer is a TypeError rather than an undercount."""
    import keras

    found, trained_before = [], False
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense) and len(layer.input.shape) == 2:
            found.append((*(int(d) for d in layer.kernel.shape), trained_before))
        elif not isinstance(layer, (keras.layers.Flatten, keras.layers.BatchNormalization,
                                    keras.layers.Dropout)):
            raise TypeError(f"{layer.name} ({type(layer).__name__}, input {layer.input.shape}): "
                            "benchmarks/limits.py counts the FLOPs of Dense layers on flat inputs, "
                            "and knows Flatten, BatchNormalization and Dropout hold no matmul")
        trained_before = trained_before or bool(layer.trainable_weights)
    return found


def training_flops_per_sample(model) -> int:
    """The FLOPs one training image costs in ``model``'s matmuls: each one's forward product and
    its weights' gradient, and its input's gradient where that runs (``matmuls``)."""
    return sum(2 * n_in * n_out * (3 if input_gradient else 2) for n_in, n_out, input_gradient
               in matmuls(model))


def model_counts(model) -> dict[str, int]:
    """What bench speed reports of ``model``: its parameters (Keras' ``count_params()``) and its
    training FLOPs per image (``training_flops_per_sample``)."""
    return {"params": model.count_params(), "flops": training_flops_per_sample(model)}


def count_worker(job: dict) -> dict:
    """``model_counts`` of shared/model.py's model at each of ``job["count"]`` hidden sizes
    (counting builds the model: a TensorFlow process of its own)."""
    from fit_vs_tape.runtime import import_tensorflow

    import_tensorflow(device="cpu", threads=job.get("thread_count"))
    from shared.model import build_model

    return {"counts": {str(h): model_counts(build_model(h, model=job["model"])) for h in job["count"]}}


def count(hidden_sizes: Sequence[int], model: str) -> dict[int, dict[str, int]]:
    """Parameters and FLOPs per training image at each hidden size, counted from the model."""
    from benchmarks.common import run_worker

    answer = run_worker("benchmarks.limits", {"kind": "count", "count": list(hidden_sizes),
                                              "model": model}, hide_gpus=True)
    return {int(h): counts for h, counts in answer["counts"].items()}


def peak_worker(job: dict) -> dict:
    """Time ``repeats`` products of two ``size`` x ``size`` float32 matrices compiled by XLA
    (TensorFlow, ``jit_compile=True``: the compiler the fastest rows use); the best is the peak."""
    from fit_vs_tape.runtime import import_tensorflow

    tf = import_tensorflow(device="cpu", threads=job.get("thread_count"))
    size = job["size"]
    a = tf.random.stateless_uniform((size, size), seed=(1, 2))
    b = tf.random.stateless_uniform((size, size), seed=(3, 4))
    # Reduced to one number inside the computation, so reading it back (the sync) copies nothing.
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)), jit_compile=True)
    seconds = timed(lambda: float(product(a, b)), job["repeats"])
    flops = 2 * size**3
    return {"size": size, "repeats": job["repeats"], "best_s": min(seconds),
            "median_s": statistics.median(seconds), "peak_flops": flops / min(seconds),
            "median_flops": flops / statistics.median(seconds)}


def timed(run, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``run``, after one untimed call (which compiles).
    ``run`` reads its result back as a Python number, so each call ends when its work is done."""
    run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def floor_worker(job: dict) -> dict:
    """The step's own matmuls alone, an epoch of them: for ``job["batches"]`` batches of
    ``job["batch_size"]`` images, the forward products of the model's Dense layers and their
    gradients (the weights', and the inputs' where a layer before has weights), with relu between,
    in one XLA-compiled ``while`` loop; no optimizer, metrics, loss or data pipeline. The best of
    ``job["repeats"]`` epochs is a floor for any framework at this model and batch size."""
    from fit_vs_tape.runtime import import_tensorflow

    tf = import_tensorflow(device="cpu", threads=job.get("thread_count"))
    from shared.model import build_model

    shapes = [(n_in, n_out) for n_in, n_out, _ in matmuls(build_model(job["hidden_units"],
                                                                      model=job["model"]))]
    batches, batch = job["batches"], job["batch_size"]
    kernels = [tf.random.stateless_normal(shape, seed=(i, 1)) * 0.01 for i, shape in enumerate(shapes)]
    x = tf.random.stateless_uniform((batches, batch, shapes[0][0]), seed=(7, 8))
    dy = tf.random.stateless_normal((batches, batch, shapes[-1][1]), seed=(9, 10))

    @tf.function(jit_compile=True)
    def epoch(x, dy):
        def body(i, total):
            activations = [x[i]]
            for w in kernels[:-1]:
                activations.append(tf.nn.relu(activations[-1] @ w))
            out = activations[-1] @ kernels[-1]
            grad, total = dy[i], total + tf.reduce_sum(out)
            for layer in reversed(range(len(kernels))):
                total += tf.reduce_sum(tf.matmul(activations[layer], grad, transpose_a=True))
                if layer:  # the input of the first layer is data: no gradient for it
                    grad = tf.matmul(grad, kernels[layer], transpose_b=True) * tf.cast(
                        activations[layer] > 0, grad.dtype)
            return i + 1, total
        return tf.while_loop(lambda i, _: i < batches, body, (0, 0.0))[1]

    seconds = timed(lambda: float(epoch(x, dy)), job["repeats"])
    return {"hidden_units": job["hidden_units"], "batch_size": batch, "batches": batches,
            "best_s": min(seconds), "median_s": statistics.median(seconds)}


def gpus_worker(job: dict) -> dict:
    """The names of the GPUs TensorFlow sees (run with the GPUs visible: common.gpu_names asks
    here, in a process of its own, before bench speed plans its GPU rows)."""
    from fit_vs_tape.runtime import environment, import_tensorflow

    import_tensorflow()
    return {"gpus": environment()["gpus"]}


WORKERS = {"gpus": gpus_worker, "count": count_worker, "floor": floor_worker, "peak": peak_worker}


def worker(job: dict) -> dict:
    """One job of this module's own process, by its ``kind``: one of WORKERS."""
    if job.get("kind") not in WORKERS:
        raise ValueError(f"job kind {job.get('kind')!r}: not one of {', '.join(WORKERS)}")
    return WORKERS[job["kind"]](job)


def main(argv: Sequence[str] | None = None) -> int:
    """``--worker JOB``: the process of one job (``worker``)."""
    from benchmarks.common import worker_main

    return worker_main("benchmarks.limits", worker, argv)


if __name__ == "__main__":
    sys.exit(main())
