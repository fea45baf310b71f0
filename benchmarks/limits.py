"""How far a way of training is from what the machine can do: the model's training FLOPs,
counted from its shapes, and this machine's matmul peak, measured in a process of its own.

    python -m benchmarks.limits --worker '{"size": 2048, "repeats": 10}'   (bench speed runs it)

The count, per training image (``training_flops_per_sample``):

    forward  = sum over the Dense layers of 2 * inputs * outputs   (one multiply-add = 2 FLOPs)
             = 2 * (784 * H + H * 10)
    backward = 2 * forward   (the gradient of each matmul's input and of its weights, one matmul each)
    training = forward + backward = 6 * (784 * H + H * 10)

for H hidden units: 609,792 for the tutorial's 128, close to 6 x its 101,770 parameters. What it
leaves out, on purpose: the biases, relu, softmax and the loss (a few FLOPs per activation), and
Adam's update (about ten FLOPs per parameter once per *batch*, ~5% of the total at batch 32).
What it counts too much: the first layer's input gradient, which nobody needs (the input is
data), so an implementation that skips it does 2 * 784 * H fewer per image. The count is the
common "6 x parameters" rule that MFU figures (nanoGPT's) count too; their denominator is a
spec-sheet peak, this one a measured peak, so a share here usually reads higher than an MFU would.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence

from shared.data import CLASS_NAMES, IMAGE_SIZE

#: The square float32 matmul that measures the peak: 2 * 2048^3 = 17.2 GFLOP per product.
PEAK_SIZE = 2048
PEAK_REPEATS = 10


def training_flops_per_sample(hidden_units: int) -> int:
    """FLOPs of one training image through Flatten -> Dense(H, relu) -> Dense(10): forward
    2 * in * out per Dense, backward twice the forward (see the module's docstring)."""
    layers = [(IMAGE_SIZE * IMAGE_SIZE, hidden_units), (hidden_units, len(CLASS_NAMES))]
    forward = sum(2 * n_in * n_out for n_in, n_out in layers)
    return 3 * forward


def epoch_flops(hidden_units: int, n_images: int) -> int:
    """Training FLOPs of one epoch over ``n_images`` images."""
    return training_flops_per_sample(hidden_units) * n_images


def peak_worker(job: dict) -> dict:
    """Time ``repeats`` products of two ``size`` x ``size`` float32 matrices compiled by XLA
    (TensorFlow, ``jit_compile=True``: the compiler the fastest rows use); the best is the peak."""
    from fit_vs_tape.runtime import import_tensorflow

    tf = import_tensorflow(device="cpu")
    size = job["size"]
    a = tf.random.stateless_uniform((size, size), seed=(1, 2))
    b = tf.random.stateless_uniform((size, size), seed=(3, 4))
    # Reduced to one number inside the computation, so reading it back (the sync) copies nothing.
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)), jit_compile=True)
    float(product(a, b))  # compile outside the timing
    seconds = []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        float(product(a, b))
        seconds.append(time.perf_counter() - start)
    flops = 2 * size**3
    return {"size": size, "repeats": job["repeats"], "best_s": min(seconds),
            "median_s": statistics.median(seconds), "peak_flops": flops / min(seconds),
            "median_flops": flops / statistics.median(seconds)}


def measure_peak(size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS) -> dict:
    """This machine's float32 matmul peak, measured now in a fresh process (GPUs hidden)."""
    from benchmarks.common import run_worker

    return run_worker("benchmarks.limits", {"size": size, "repeats": repeats}, hide_gpus=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``--worker JOB``: the peak measurement's own process."""
    from benchmarks.common import worker_main

    return worker_main("benchmarks.limits", peak_worker, argv)


if __name__ == "__main__":
    sys.exit(main())
