"""The preprocessed cache: images cropped and resized once, kept on disk.

A cache folder ``<cache_dir>/<size>px`` (``<size>px-first<N>`` with ``max_images``) holds
``images.npy`` (uint8 (N, size, size, 3), memory-mapped), ``table.csv`` (attributes,
``partition`` and ``split`` per image) and ``manifest.json``. It is built in a temporary
sibling and renamed into place, and reused only while its manifest matches the request.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..config import project_root
from ._io import (
    check_free_space,
    cpu_count,
    display_path,
    folder_in_place,
    process_pool,
)
from .celeba import (
    ATTRIBUTE_NAMES,
    SPLITS,
    CelebaDataWarning,
    CelebaSource,
    annotations_for,
    find_celeba,
)
from .crop import CROP_RULE, _open_zip, decode_chunk
from .demo import DEMO_SEED, DEMO_VERSION, demo_marker, write_demo_dataset

CACHE_VERSION = 4  # raised whenever the cache format changes: older caches are rebuilt
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
SPLIT_SEED = 0  # shuffles identities before an identity fallback split
_CHUNK = 64  # images per worker task


@dataclass
class Cache:
    """A prepared cache: ``images`` (uint8 memmap (N, size, size, 3)) and ``table`` (indexed
    by file name; row i describes ``images[i]``: 40 bool attributes, ``partition`` (-1
    unknown), ``identity`` and ``split``)."""

    path: Path
    images: np.ndarray
    table: pd.DataFrame
    manifest: dict

    def __len__(self) -> int:
        return len(self.table)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    @property
    def is_demo(self) -> bool:
        """True for the synthetic demo faces; figures then say "(demo data)"."""
        return bool(self.manifest.get("demo"))

    def split_indices(self, split: str) -> np.ndarray:
        """Rows of ``images`` in ``split`` ("train", "val" or "test"), int64, ascending."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {list(SPLITS)}")
        return np.flatnonzero(self.table["split"].to_numpy() == split).astype(np.int64)

    def images_of(self, split: str, limit: int | None = None) -> np.ndarray:
        """The first ``limit`` images (``None``: all) of ``split`` in memory, uint8."""
        rows = self.split_indices(split)[:limit]
        if not len(rows):
            raise ValueError(f"split={split!r} of the cache has no images; see cache.summary()")
        return np.asarray(self.images[rows])

    def view_of(self, split: str) -> np.ndarray:
        """All images of ``split``; a memmap view when the split is one contiguous block."""
        rows = self.split_indices(split)
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            return self.images[rows[0] : rows[-1] + 1]
        return np.asarray(self.images[rows])

    def identities_of(self, split: str, limit: int | None = None) -> np.ndarray | None:
        """Person ids (int64, -1 unknown) of the rows ``images_of`` returns; None if unknown."""
        ids = self.table["identity"].to_numpy()[self.split_indices(split)][:limit]
        return ids.astype(np.int64) if (ids >= 0).any() else None

    def attributes_of(self, split: str) -> pd.DataFrame:
        """The 40 bool attribute columns of ``split``, indexed by file name."""
        return self.table.iloc[self.split_indices(split)][list(ATTRIBUTE_NAMES)]

    def original(self, name: str):
        """The source image ``name`` before cropping, as a PIL image (for figures)."""
        images = Path(self.manifest["images_path"])
        file = images / name
        if images.suffix.lower() == ".zip":
            archive = _open_zip(str(images), os.getpid())
            member = next(m for m in archive.namelist() if m.rsplit("/", 1)[-1] == name)
            file = io.BytesIO(archive.read(member))
        with Image.open(file) as image:
            return image.convert("RGB")

    def summary(self) -> str:
        """A few lines on what the cache holds."""
        m = self.manifest
        counts = self.table["split"].value_counts()
        kind = "synthetic demo faces, not CelebA" if self.is_demo else "CelebA"
        split_text = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in SPLITS)
        rule = "official partition" if m["split_rule"] == "official" else "fallback split"
        lines = [
            f"{len(self)} images {self.size}x{self.size} uint8 "
            f"({self.images.nbytes / 2**20:.1f} MiB) in {display_path(self.path)}",
            f"source: {m['source_display']} ({m['layout']} layout; {kind})",
            f"splits: {split_text} ({rule})",
            f"skipped: {len(m['skipped'])} unreadable image(s)",
        ]
        people = m.get("split_identities") or {}
        if any(people.values()):
            shared = m.get("identities_in_several_splits")
            lines.insert(3, "people: " + ", ".join(f"{s} {people[s]}" for s in SPLITS)
                         + f" ({shared} in more than one split)")
        return "\n".join(lines)


def split_record(cache: Cache) -> dict:
    """A run's ``split.json``: the cache's request, the split rule and sizes, and
    ``members_sha256``, a hash of every image's file name and split (machine-independent)."""
    rows = zip(cache.table.index, cache.table["split"], strict=True)
    members = hashlib.sha256("".join(f"{name}\t{split}\n" for name, split in rows).encode())
    request = cache.manifest.get("request", {})
    return {
        "cache": {k: request.get(k) for k in ("size", "max_images", "source_fingerprint")},
        "split_rule": cache.manifest.get("split_rule"),
        "split_counts": {s: int((cache.table["split"] == s).sum()) for s in SPLITS},
        "members_sha256": members.hexdigest(),
    }


def split_changes(recorded: dict, cache: Cache) -> list[str]:
    """How ``cache``'s split differs from an earlier ``split_record`` (empty: the same)."""
    now = split_record(cache)
    if now["members_sha256"] == recorded.get("members_sha256") and (
            now["split_rule"] == recorded.get("split_rule")):
        return []
    changes = []
    for key, value in now["cache"].items():
        before = (recorded.get("cache") or {}).get(key)
        if value != before:
            changes.append("the source images changed" if key == "source_fingerprint"
                           else f"{key} {before!r} then, {value!r} now")
    before = recorded.get("split_counts") or {}
    counts = ", ".join(f"{s} {before.get(s)} -> {now['split_counts'][s]}" for s in SPLITS)
    changes.append(f"split sizes {counts}")
    if now["split_rule"] != recorded.get("split_rule"):
        changes.append(f"split rule now: {now['split_rule']}")
    return changes


def cache_folder(cache_dir: str | os.PathLike, size: int, max_images: int | None) -> Path:
    """The folder a cache with these settings lives in."""
    name = f"{size}px" + (f"-first{max_images}" if max_images else "")
    folder = Path(cache_dir).expanduser()
    return (folder if folder.is_absolute() else project_root() / folder) / name


def prepare(data_dir: str | os.PathLike | None = None, size: int = 64,
            cache_dir: str | os.PathLike = "data/cache", max_images: int | None = None,
            progress: bool = True, workers: int | None = None) -> Cache:
    """Build (or reuse) the cache of ``size`` x ``size`` faces of the CelebA in ``data_dir``
    (``None``: ``$CELEBA_DIR``, else ``data/celeba``), keeping the first ``max_images`` by
    file name. Unreadable images are skipped with a ``CelebaDataWarning``.
    ``workers``: decoding processes (``None``: one per core up to 8; 1 below 256 images).
    """
    if int(size) != size or size < 8:
        raise ValueError(f"size={size!r}: expected an integer of at least 8 pixels (e.g. 64)")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images={max_images!r}: expected None (all images) or a positive "
                         "count")
    size = int(size)
    source = find_celeba(data_dir)
    members = source.list_images()
    names = list(members)[:max_images]
    request = {
        "version": CACHE_VERSION,
        "size": size,
        "max_images": max_images,
        "crop_rule": CROP_RULE,
        "source_fingerprint": source.fingerprint(names),
    }
    target = cache_folder(cache_dir, size, max_images)
    cache, reason = open_cache(target, request)
    if cache is None:
        if progress:
            print(f"building {display_path(target)} ({reason})", file=sys.stderr)
        _build(source, names, [members[n] for n in names], request, target, progress, workers)
        cache, reason = open_cache(target, request)
        if cache is None:  # pragma: no cover - would mean the build itself is broken
            raise RuntimeError(f"the cache just built in {target} does not load: {reason}")
    skipped = cache.manifest.get("skipped")  # the build's warnings, also when reused
    if skipped:
        listed = ", ".join(f"{s['file']} ({s['reason']})" for s in skipped[:5])
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) of {cache.manifest['found']} in "
            f"{display_path(source.images)}: {listed}{' ...' if len(skipped) > 5 else ''}; "
            f"all are listed under 'skipped' in {display_path(cache.path / 'manifest.json')}",
            CelebaDataWarning,
            stacklevel=2,
        )
    if cache.manifest.get("split_warning"):
        warnings.warn(cache.manifest["split_warning"], CelebaDataWarning, stacklevel=2)
    return cache


def open_cache(folder: str | os.PathLike, request: dict | None = None) -> tuple[Cache | None, str]:
    """``(cache, "ok")`` if ``folder`` holds a complete cache matching ``request``, else
    ``(None, reason)``."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        return None, "no cache yet" if not folder.exists() else "no manifest (interrupted build?)"
    except (OSError, ValueError) as error:
        return None, f"unreadable manifest ({error})"
    if not manifest.get("complete"):
        return None, "incomplete build"
    have = manifest.get("request", {})
    changed = [k for k in request or {} if have.get(k) != request[k]]
    if changed:
        detail = ", ".join(
            "source files changed"
            if k == "source_fingerprint"
            else f"{k} {have.get(k)!r} -> {request[k]!r}"
            for k in changed
        )
        return None, f"manifest does not match the request: {detail}"
    try:
        images = np.load(folder / "images.npy", mmap_mode="r")
        table = pd.read_csv(folder / "table.csv", index_col="image",
                            dtype={"image": str, "split": str})
        table = table.astype({**dict.fromkeys(ATTRIBUTE_NAMES, bool), "partition": np.int8,
                              "identity": np.int32})
    except (OSError, ValueError, KeyError) as error:
        return None, f"unreadable cache files ({type(error).__name__}: {error})"
    size = manifest["size"]
    count = manifest["count"]
    if images.dtype != np.uint8 or images.shape != (count, size, size, 3) or len(table) != count:
        return None, (f"images {images.shape} / table {len(table)} rows do not match the "
                      f"manifest count {count}")
    return Cache(path=folder, images=images, table=table, manifest=manifest), "ok"


def _build(source: CelebaSource, names, members, request, target: Path, progress, workers) -> None:
    started = time.perf_counter()
    table = annotations_for(source, names)  # annotation errors surface before any decoding
    size = request["size"]
    if workers is None:
        workers = min(cpu_count(), 8) if len(names) >= 256 else 1
    with folder_in_place(target) as tmp:
        # images, plus about 200 bytes per row of table.csv; checked before writing them
        check_free_space(target.parent, len(names) * (size * size * 3 + 200) + 2**20,
                         f"the {size}x{size} cache of {len(names):,} images")
        decoded = _decode_into(tmp / "images.npy", source, names, members, size, progress,
                               workers)
        table = table.loc[decoded["kept"]]
        identity = table["identity"].to_numpy()
        split, split_rule, split_warning = _assign_splits(table["partition"].to_numpy(), identity)
        table["split"] = split
        table.astype({name: np.int8 for name in ATTRIBUTE_NAMES}).to_csv(tmp / "table.csv")
        known = identity >= 0  # people with images in more than one split, if known
        shared = (pd.Series(split[known]).groupby(identity[known]).nunique() > 1).sum()
        seconds = time.perf_counter() - started
        marker = demo_marker(source.root)
        manifest = {
            "version": CACHE_VERSION,
            "complete": True,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_id": uuid.uuid4().hex,
            "request": request,
            "source": _resolved(source.root),
            "source_display": display_path(source.root),
            "layout": source.layout,
            "images_path": _resolved(source.images),
            "attributes_file": _resolved(source.attributes_file),
            "partition_file": _resolved(source.partition_file),
            "demo": marker is not None,
            "demo_generator": marker,
            "crop_rule": CROP_RULE,
            "size": size,
            "count": len(decoded["kept"]),
            "found": len(names),
            "skipped": decoded["skipped"],
            "source_sizes": decoded["source_sizes"],
            "split_rule": split_rule,
            "split_warning": split_warning,
            "split_counts": {s: int((split == s).sum()) for s in SPLITS},
            "identity_file": _resolved(source.identity_file),
            "split_identities": {
                s: int(len(np.unique(identity[(split == s) & known]))) for s in SPLITS
            },
            "identities_in_several_splits": int(shared) if known.any() else None,
            "official_test_images_in_training": int(
                ((table["partition"] == 2) & (table["split"] != "test")).sum()
            ),
            "images_sha256": decoded["sha256"],
            "workers": workers,
            "seconds": round(seconds, 2),
            "images_per_second": round(len(names) / seconds, 1),
        }
        # the manifest goes last: without it no reader accepts the folder
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _resolved(path: Path | None) -> str | None:
    return str(path.resolve()) if path else None


def _decode_into(path: Path, source: CelebaSource, names, members, size: int, progress,
                 workers: int) -> dict:
    """Decode ``names`` into the uint8 ``.npy`` file ``path``, skipping unreadable images.
    Faces are appended with plain writes (a full disk raises ``OSError``); numpy pads the
    header so that its row count can be rewritten in place at the end."""
    from tqdm import tqdm

    kept, skipped, source_sizes = [], [], Counter()
    digest = hashlib.sha256()
    jobs = [(str(source.images), source.is_zip, members[i : i + _CHUNK], size)
            for i in range(0, len(members), _CHUNK)]
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(names), size, size, 3)}
    with (
        tqdm(total=len(members), desc=f"cropping to {size}x{size}", unit="img",
             disable=not progress, smoothing=0.1) as bar,
        process_pool(workers) if workers > 1 else contextlib.nullcontext() as pool,
        open(path, "wb") as file,  # opened after the fork: workers never hold its buffer
    ):
        np.lib.format.write_array_header_1_0(file, header)
        chunks = (pool.imap if workers > 1 else map)(decode_chunk, jobs)
        for name, (face, error, source_size) in zip(names, chain.from_iterable(chunks),
                                                    strict=True):
            bar.update()
            if face is None:
                skipped.append({"file": name, "reason": error})
                continue
            file.write(face)
            digest.update(face)
            kept.append(name)
            source_sizes[f"{source_size[0]}x{source_size[1]}"] += 1
        file.seek(0)
        np.lib.format.write_array_header_1_0(file, {**header, "shape": (len(kept), size, size, 3)})
    if not kept:
        raise ValueError(
            f"none of the {len(names)} images in {display_path(source.images)} could be read; "
            "see the errors in the warning"
        )
    return {"kept": kept, "skipped": skipped, "sha256": digest.hexdigest(),
            "source_sizes": dict(source_sizes.most_common())}


def assign_splits(partition: np.ndarray,
                  identity: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Split names ("train"/"val"/"test") for rows sorted by file name, and the rule used.

    Official: partition 0 -> train, 1 -> val, 2 -> test. When that leaves a split empty, the
    largest official split (all images without a partition) is cut 80:10:10 into it and
    the empty splits: by person when every image has an identity (shuffled with
    ``SPLIT_SEED``; no person in two splits), else in file-name order. A
    ``CelebaDataWarning`` says which, and when official test images end up in training.
    """
    split, rule, message = _assign_splits(np.asarray(partition), identity)
    if message:
        warnings.warn(message, CelebaDataWarning, stacklevel=2)
    return split, rule


def _assign_splits(
    partition: np.ndarray, identity: np.ndarray | None = None
) -> tuple[np.ndarray, str, str | None]:
    """``assign_splits`` without the warning: (split, rule, warning message or None)."""
    split = np.array([*SPLITS, ""], dtype=object)[partition]  # partition -1 (unknown): ""
    counts = {name: int((split == name).sum()) for name in SPLITS}
    missing = [name for name in SPLITS if counts[name] == 0]
    if not missing:
        return split.astype(str), "official", None

    donor = max(SPLITS, key=counts.get) if len(missing) < len(SPLITS) else None
    pool = np.flatnonzero(split == (donor or ""))
    group = [s for s in SPLITS if s in missing or s == donor]
    keeper, need = donor or "train", 1 if donor else 0  # the block that absorbs rounding
    source = (
        f"the {len(pool)} official {donor} images"
        if donor
        else f"all {len(pool)} images (no partition file)"
    )
    people = None if identity is None else np.asarray(identity)[pool]
    by_identity = people is not None and bool((people >= 0).all())
    # whole people (shuffled) or images (in file-name order) are cut into consecutive blocks
    units = pool
    if by_identity:
        units = np.random.default_rng(SPLIT_SEED).permutation(np.unique(people))
    total = sum(SPLIT_FRACTIONS[s] for s in group)
    sizes = {
        s: max(1 if s in missing else 0, round(len(units) * SPLIT_FRACTIONS[s] / total))
        for s in group
    }
    sizes[keeper] = len(units) - sum(k for s, k in sizes.items() if s != keeper)
    if sizes[keeper] < need:
        raise ValueError(
            f"only {len(units)} {'identities' if by_identity else 'image(s)'}: too few to fill "
            f"the empty split(s) {missing}; use more images (max_images)"
        )
    start, described = 0, []
    for s in group:
        block = units[start : start + sizes[s]]
        rows = pool[np.isin(people, block)] if by_identity else block
        split[rows] = s
        start += sizes[s]
        described.append(f"{s} {len(rows)} images of {sizes[s]} people" if by_identity
                         else f"{s} {sizes[s]}")
    if by_identity:
        rule = (
            f"fallback by identity: the official partition leaves {', '.join(missing)} empty, so "
            f"{source} are split by person: their {len(units)} identities, shuffled with seed "
            f"{SPLIT_SEED}, are cut 80:10:10 into {', '.join(described)}; no person is in two "
            "splits"
        )
    else:
        rule = (
            f"fallback: the official partition leaves {', '.join(missing)} empty, so {source}, "
            f"in file-name order, are cut 80:10:10 into {', '.join(described)}"
        )
    message = rule + " (see data.assign_splits)."
    leaked = int(((partition == 2) & (split != "test")).sum())
    if leaked:
        message += (
            f" {leaked} of them are OFFICIAL TEST images now used for training/validation: "
            "results on this data are not CelebA test results."
        )
    return split.astype(str), rule, message


def load_cache(config, progress: bool = True) -> Cache:
    """The cache for a ``Config``; the demo profile first draws its faces when missing."""
    if config.is_demo:
        root = config.resolve(config.data_dir or "data/demo")
        marker = demo_marker(root)
        # always DEMO_SEED: runs with different training seeds must see the same data
        wanted = {"n": config.demo_images, "seed": DEMO_SEED, "version": DEMO_VERSION}
        if marker is None or any(marker.get(k) != v for k, v in wanted.items()):
            if progress:
                print(f"drawing {config.demo_images} demo faces into {display_path(root)}",
                      file=sys.stderr)
            write_demo_dataset(root, n=config.demo_images, seed=DEMO_SEED, progress=progress)
    else:
        root = config.resolve(config.data_dir) if config.data_dir else None
    return prepare(root, size=config.image_size, cache_dir=config.cache_path,
                   max_images=config.max_images, progress=progress)
