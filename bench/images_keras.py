"""The plain Keras script mlcli's image training is measured against (bench/run.py, `images`):
`keras.utils.image_dataset_from_directory` and the same CNN as configs/shapes_cnn.yaml.

Same math as `mlcli train`: images decoded, converted to 3 channels and resized to 32x32 (bilinear)
by Keras's own loader, cached in memory and prefetched; the model Input -> Rescaling(1/255) ->
Conv2D(16) -> MaxPooling2D -> Conv2D(32) -> MaxPooling2D -> Flatten -> Dense(32) -> Dense(classes);
Adam(0.003), categorical cross-entropy, accuracy, batch 32, no validation; as many steps per TensorFlow
call as mlcli's steps_per_execution: auto runs (the tuned baseline). The only addition to a plain script
is a callback reading the clock at each epoch's start and end. Prints one JSON line.

    python bench/images_keras.py --train DIR --test DIR [--epochs 3] [--batch-size 32] [--seed 42]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    size = (args.size, args.size)

    def load(folder: str, shuffle: bool):
        return keras.utils.image_dataset_from_directory(
            folder, labels="inferred", label_mode="categorical", color_mode="rgb", batch_size=args.batch_size,
            image_size=size, shuffle=shuffle, seed=args.seed, interpolation="bilinear", verbose=False)

    train = load(args.train, True)
    classes = len(train.class_names)
    train = train.cache().prefetch(tf.data.AUTOTUNE)
    test = load(args.test, False).cache().prefetch(tf.data.AUTOTUNE)
    model = keras.Sequential([
        keras.Input((*size, 3)),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ])
    # Tuned as mlcli's steps_per_execution: auto is: about 4,096 images per TensorFlow call, at most an epoch.
    steps = max(1, min(4096 // args.batch_size, int(train.cardinality())))
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps)

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    clock = Clock()
    model.fit(train, epochs=args.epochs, callbacks=[clock], verbose=0)
    _, accuracy = model.evaluate(test, verbose=0)
    images = sum(int(x.shape[0]) for x, _ in train)
    print(json.dumps({"train_images": images, "epoch_seconds": clock.seconds, "test_accuracy": float(accuracy)}))


if __name__ == "__main__":
    main()
