"""How far a way of training is from what the machine can do: the training FLOPs the model's
matmuls execute, counted from the model itself, and this machine's matmul peak, measured in a
process of its own.

    python -m benchmarks.limits --worker '{"size": 2048, "repeats": 10}'   (bench speed runs it)
    python -m benchmarks.limits --worker '{"count": [128], "model": "tutorial"}'
    python -m benchmarks.limits --worker '{"gpus": true}'   (the GPUs TensorFlow sees, for bench speed)

The count, per training image (``training_flops_per_sample``), walks the model's Dense layers:

    forward           2 * inputs * outputs per Dense      (one multiply-add = 2 FLOPs)
    weights' gradient 2 * inputs * outputs per Dense
    input's gradient  2 * inputs * outputs per Dense, only where a layer before it has trained
                      weights: the first layer's input is data, and nobody asks for its gradient

so for Flatten -> Dense(H) -> Dense(10): 2*784H + 2*784H + 3 * 2*10H = 4*784H + 60H, 409,088 for
the tutorial's 128. That is what runs: TensorFlow's traced train step holds exactly these 5
MatMuls (its MatMul gradient skips the input it was not asked for; tests/test_peers.py reads them
from the graph), JAX differentiates the parameters only, and PyTorch's input needs no gradient.
Left out, on purpose: the biases, relu, batch norm, dropout, softmax and the loss (a few FLOPs per
activation), and Adam's update (about ten FLOPs per parameter once per *batch*). The usual
"6 x parameters" of MFU figures counts the first layer's input gradient too, 1.49x this here.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence

#: The square float32 matmul that measures the peak: 2 * 2048^3 = 17.2 GFLOP per product.
PEAK_SIZE = 2048
PEAK_REPEATS = 10


def training_flops_per_sample(model) -> int:
    """The FLOPs one training image costs in ``model``'s matmuls (a built Keras model): per Dense
    layer its forward product and its weights' gradient, and its input's gradient only where a
    layer before it has trainable weights (see the module's docstring)."""
    import keras

    total, trained_before = 0, False
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            n_in, n_out = layer.kernel.shape
            total += 2 * int(n_in) * int(n_out) * (3 if trained_before else 2)
        trained_before = trained_before or bool(layer.trainable_weights)
    return total


def count_worker(job: dict) -> dict:
    """``training_flops_per_sample`` of shared/model.py's model at each of ``job["count"]`` hidden
    sizes (a process of its own: counting builds the model, which needs TensorFlow)."""
    from fit_vs_tape.runtime import import_tensorflow

    import_tensorflow(device="cpu", threads=job.get("thread_count"))
    from shared.model import build_model

    return {str(h): training_flops_per_sample(build_model(h, model=job["model"])) for h in job["count"]}


def count_flops(hidden_sizes: Sequence[int], model: str) -> dict[int, int]:
    """FLOPs per training image for each hidden size, counted from the model in a fresh process."""
    from benchmarks.common import run_worker

    counted = run_worker("benchmarks.limits", {"count": list(hidden_sizes), "model": model},
                         hide_gpus=True)
    return {int(h): n for h, n in counted.items() if h != "threads"}


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
    import keras

    from shared.model import build_model

    shapes = [tuple(int(d) for d in layer.kernel.shape)
              for layer in build_model(job["hidden_units"], model=job["model"]).layers
              if isinstance(layer, keras.layers.Dense)]
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


def measure_peak(size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS, threads: str = "all") -> dict:
    """This machine's float32 matmul peak, measured now in a fresh process (GPUs hidden), under
    the run's thread policy."""
    from benchmarks.common import run_worker

    return run_worker("benchmarks.limits", {"size": size, "repeats": repeats, "threads": threads},
                      hide_gpus=True)


def worker(job: dict) -> dict:
    """One job of this module's own process, told apart by its keys: the GPUs' names, the FLOP
    count, the floor or the peak."""
    if "gpus" in job:
        return gpus_worker(job)
    if "count" in job:
        return count_worker(job)
    return floor_worker(job) if "batches" in job else peak_worker(job)


def main(argv: Sequence[str] | None = None) -> int:
    """``--worker JOB``: the process of one job (``worker``)."""
    from benchmarks.common import worker_main

    return worker_main("benchmarks.limits", worker, argv)


if __name__ == "__main__":
    sys.exit(main())
