"""tf.data pipelines over a cache: shuffled batches of float32 images in [0, 1]."""

from __future__ import annotations

import numpy as np

from .cache import Cache
from .celeba import ATTRIBUTE_NAMES


def make_dataset(cache: Cache, split: str, batch_size: int, shuffle: bool | None = None,
                 seed: int = 0, with_attributes: bool = False, drop_remainder: bool = False,
                 flip: bool = False):
    """A ``tf.data.Dataset`` of float32 images in [0, 1] (with ``with_attributes``, also the
    40 attributes as float32 0/1) over one split of ``cache``. ``shuffle`` ``None``: only
    "train". ``flip``: mirror each image with probability 1/2. Only row indices go through
    tf.data; each batch is gathered from the memmap in one numpy call."""
    import tensorflow as tf

    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive integer")
    rows = cache.split_indices(split)
    if len(rows) == 0:
        raise ValueError(f"split={split!r} has no images in {cache.path}; see cache.summary()")
    shuffle = (split == "train") if shuffle is None else shuffle
    images, size = cache.images, cache.size
    attributes = cache.table[list(ATTRIBUTE_NAMES)].to_numpy(np.float32)
    batch = batch_size if drop_remainder else None

    def gather(index):
        return np.asarray(images[index]), attributes[index]

    def load(index):
        x, y = tf.numpy_function(gather, [index], (tf.uint8, tf.float32), stateful=False)
        x.set_shape([batch, size, size, 3])
        y.set_shape([batch, len(ATTRIBUTE_NAMES)])
        x = tf.cast(x, tf.float32) / 255.0
        if flip:
            mirror = tf.random.uniform([tf.shape(x)[0], 1, 1, 1], seed=seed) < 0.5
            x = tf.where(mirror, tf.reverse(x, axis=[2]), x)
        return (x, y) if with_attributes else x

    dataset = tf.data.Dataset.from_tensor_slices(rows)
    if shuffle:
        dataset = dataset.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
