"""The machine's measured float32 matrix-multiply peak, through TensorFlow (the engine both sides use).

Square float32 matmuls of a few sizes, each timed as the median of several repetitions after a
warm-up; the peak is the best size's median FLOP/s (2·n³ per product). Prints one JSON line.

    python bench/matmul_peak.py [--sizes 512 1024 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import tensorflow as tf

    results = {}
    for n in args.sizes:
        a = tf.random.normal((n, n), dtype=tf.float32, seed=1)
        b = tf.random.normal((n, n), dtype=tf.float32, seed=2)
        inner = max(1, int(2048**3 // n**3))  # about the same work per timing whatever the size

        @tf.function
        def products(a, b, inner=inner):
            c = a
            for _ in range(inner):
                c = tf.matmul(c, b) * 1e-3  # keep values finite; the scaling is n² against the product's n³
            return tf.reduce_sum(c)

        products(a, b).numpy()  # trace and warm up
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            products(a, b).numpy()
            times.append(time.perf_counter() - started)
        results[n] = 2.0 * n**3 * inner / statistics.median(times)
    best = max(results, key=results.get)
    print(json.dumps({"peak_flops": results[best], "size": best,
                      "by_size": {str(n): v for n, v in results.items()},
                      "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                  "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}}))


if __name__ == "__main__":
    main()
