"""``python -m resvae_keras bench data``: preprocessing and pipeline throughput on demo JPEGs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .cache import prepare
from .demo import write_demo_dataset
from .pipeline import make_dataset


def benchmark(
    n: int = 2000,
    size: int = 64,
    batch_size: int = 64,
    workers: int | None = None,
    min_seconds: float = 2.0,
    progress: bool = False,
) -> dict:
    """Measure the data layer on ``n`` freshly drawn 178x218 demo JPEGs in a temp folder.

    Returns a dict:
        ``n``, ``size``, ``batch_size``, ``workers``;
        ``preprocess_img_per_s``: JPEG -> cropped ``size`` x ``size`` cache, the whole
        ``prepare`` call (listing, annotations, decoding, writing);
        ``pipeline_img_per_s``: float32 training batches from that cache (shuffled train
        split, repeated for at least ``min_seconds``).

    Uses no network; the temp folder is deleted afterwards.
    """
    import warnings

    from .celeba import CelebaDataWarning

    with tempfile.TemporaryDirectory(prefix="resvae-bench-") as tmp:
        root = write_demo_dataset(Path(tmp) / "demo", n=n, seed=0, progress=progress)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CelebaDataWarning)
            cache = prepare(
                root, size=size, cache_dir=Path(tmp) / "cache", progress=progress, workers=workers
            )
        preprocess_s = time.perf_counter() - started

        dataset = make_dataset(cache, "train", batch_size=batch_size, seed=0)
        for _ in dataset.take(2):  # build the pipeline and fill the prefetch buffer
            pass
        seen, started = 0, time.perf_counter()
        while time.perf_counter() - started < min_seconds:
            for images in dataset:
                seen += int(images.shape[0])
        pipeline_s = time.perf_counter() - started
        return {
            "n": n,
            "size": size,
            "batch_size": batch_size,
            "workers": cache.manifest["workers"],
            "preprocess_img_per_s": round(n / preprocess_s, 1),
            "pipeline_img_per_s": round(seen / pipeline_s, 1),
            "preprocess_s": round(preprocess_s, 2),
        }
