"""Tests for resvae_keras.data: layouts, crop rule, cache, splits, tf.data, demo faces, errors."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from resvae_keras import data
from resvae_keras.data import cache as cache_module
from resvae_keras.data import demo as demo_module

ATTRS = list(data.ATTRIBUTE_NAMES)


def _prepare(root, tmp_path, **kwargs):
    kwargs.setdefault("progress", False)
    return data.prepare(root, size=kwargs.pop("size", 64), cache_dir=tmp_path / "cache", **kwargs)


# -- layouts --------------------------------------------------------------------------


def _txt_to_csv(txt: Path, csv: Path, header: str | None) -> None:
    lines = txt.read_text().splitlines()
    if header is None:  # attributes: drop the count line, keep the names line
        lines = lines[1:]
        out = ["image_id," + ",".join(lines[0].split())]
        lines = lines[1:]
    else:
        out = [header]
    out += [",".join(line.split()) for line in lines if line.strip()]
    csv.write_text("\n".join(out) + "\n")


def _make_layout(layout: str, demo_root: Path, root: Path) -> None:
    """Rebuild the demo data in another download layout under ``root``."""
    images = demo_root / "img_align_celeba"
    attr, part = demo_root / "list_attr_celeba.txt", demo_root / "list_eval_partition.txt"
    root.mkdir()
    if layout == "google-drive":
        for sub in ("Img", "Anno", "Eval"):
            (root / sub).mkdir()
        os.symlink(images, root / "Img" / "img_align_celeba")
        (root / "Anno" / attr.name).write_bytes(attr.read_bytes())
        (root / "Eval" / part.name).write_bytes(part.read_bytes())
    elif layout == "kaggle":
        (root / "img_align_celeba").mkdir()
        os.symlink(images, root / "img_align_celeba" / "img_align_celeba")
        _txt_to_csv(attr, root / "list_attr_celeba.csv", header=None)
        _txt_to_csv(part, root / "list_eval_partition.csv", header="image_id,partition")
    elif layout in ("zip", "google-drive-zip"):
        folder = root / "Img" if layout == "google-drive-zip" else root
        folder.mkdir(exist_ok=True)
        with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as archive:
            for path in sorted(images.iterdir()):
                archive.write(path, f"img_align_celeba/{path.name}")
        (root / attr.name).write_bytes(attr.read_bytes())
        (root / part.name).write_bytes(part.read_bytes())
    else:
        raise ValueError(layout)


def test_official_layout_is_found(demo_root):
    source = data.find_celeba(demo_root)
    assert source.layout == "official"
    assert source.images == demo_root / "img_align_celeba"
    assert source.partition_file.name == "list_eval_partition.txt"
    assert len(source.list_images()) == 60


@pytest.mark.parametrize(
    "layout, expected",
    [
        ("google-drive", "google-drive"),
        ("kaggle", "kaggle"),
        ("zip", "zip"),
        ("google-drive-zip", "zip"),
    ],
)
def test_other_layouts_give_the_same_cache(layout, expected, demo_root, demo_cache, tmp_path):
    root = tmp_path / "download"
    _make_layout(layout, demo_root, root)
    assert data.find_celeba(root).layout == expected
    cache = _prepare(root, tmp_path)
    assert cache.manifest["layout"] == expected
    np.testing.assert_array_equal(cache.images, demo_cache.images)
    pd.testing.assert_frame_equal(cache.table, demo_cache.table)


def test_root_comes_from_argument_then_env_then_default(demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CELEBA_DIR", str(demo_root))
    assert data.find_celeba().root == demo_root
    with pytest.raises(data.CelebaNotFoundError):
        data.find_celeba(tmp_path / "elsewhere")  # the argument wins over CELEBA_DIR
    monkeypatch.delenv("CELEBA_DIR")
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))
    with pytest.raises(data.CelebaNotFoundError, match="data/celeba"):
        data.find_celeba()


def test_missing_root_error_names_every_path_and_the_readme(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        data.find_celeba(tmp_path / "no_such_folder")
    assert isinstance(missing.value, data.CelebaNotFoundError)
    assert "no_such_folder" in str(missing.value)
    assert "Getting CelebA" in str(missing.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.CelebaNotFoundError) as nothing:
        data.find_celeba(empty)
    message = str(nothing.value)
    for tried in ("empty/img_align_celeba", "empty/img_align_celeba/img_align_celeba", "empty/Img/img_align_celeba",
                  "empty/img_align_celeba.zip", "empty/Img/img_align_celeba.zip"):  # fmt: skip
        assert f"{tried}\n" in message + "\n"
    assert 'README.md, section "Getting CelebA"' in message


def test_missing_attribute_file_lists_the_candidates(demo_copy):
    (demo_copy / "list_attr_celeba.txt").unlink()
    with pytest.raises(data.CelebaNotFoundError) as error:
        data.find_celeba(demo_copy)
    assert "Anno/list_attr_celeba.txt" in str(error.value)
    assert "list_attr_celeba.csv" in str(error.value)



def test_truncated_zip_is_named_as_corrupt(demo_copy):
    folder = demo_copy / "img_align_celeba"
    archive = demo_copy / "img_align_celeba.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.iterdir())[:5]:
            zipped.write(path, f"img_align_celeba/{path.name}")
    shutil.rmtree(folder)
    archive.write_bytes(archive.read_bytes()[:-200])  # cut short, e.g. an interrupted download
    with pytest.raises(data.CelebaNotFoundError) as error:
        data.find_celeba(demo_copy)
    assert "img_align_celeba.zip (exists" in str(error.value)
    assert "not a readable zip: truncated or corrupt" in str(error.value)


# -- crop and resize ------------------------------------------------------------------


def test_crop_box_rule():
    assert data.crop_box(178, 218) == (15.0, 40.0, 163.0, 188.0)
    assert data.crop_box(89, 109) == (7.5, 20.0, 81.5, 94.0)
    assert data.crop_box(356, 436) == (30.0, 80.0, 326.0, 376.0)
    left, top, right, bottom = data.crop_box(300, 100)  # wide: the height limits the square
    assert (right - left, top, bottom) == (100.0, 0.0, 100.0)
    rng = np.random.default_rng(0)
    for width, height in rng.integers(20, 400, size=(50, 2)):
        left, top, right, bottom = data.crop_box(int(width), int(height))
        assert right - left == pytest.approx(bottom - top)
        assert right - left == pytest.approx(min(148 / 178 * width, height))
        assert 0 <= left and right <= width and 0 <= top and bottom <= height + 1e-9
        assert (left + right) / 2 == pytest.approx(width / 2)


def test_crop_keeps_exactly_the_box(tmp_path):
    canvas = np.zeros((218, 178, 3), np.uint8)
    canvas[40:188, 15:163] = 255  # white inside the crop box, black outside
    Image.fromarray(canvas).save(tmp_path / "box.png")
    face, source_size = data.load_face(tmp_path / "box.png", size=148)
    assert source_size == (178, 218)
    assert face.shape == (148, 148, 3) and face.dtype == np.uint8
    assert face.min() == 255
    small, _ = data.load_face(tmp_path / "box.png", size=64)
    assert small[1:-1, 1:-1].min() >= 250


def test_resize_is_antialiased(tmp_path):
    checker = ((np.indices((218, 178)).sum(axis=0) % 2) * 255).astype(np.uint8)
    Image.fromarray(np.stack([checker] * 3, axis=-1)).save(tmp_path / "checker.png")
    face, _ = data.load_face(tmp_path / "checker.png", size=64)
    assert abs(face.mean() - 127.5) < 3  # a 1-pixel checkerboard averages to grey...
    assert face[2:-2, 2:-2].std() < 8  # ...instead of aliasing into a pattern



def test_16_bit_png_keeps_its_grey_level(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((109, 89), 32768, np.uint16)).save(path)  # mid grey, 16 bit
    face, size = data.load_face(path, size=16)
    assert size == (89, 109) and face.dtype == np.uint8
    assert np.abs(face.astype(int) - 128).max() <= 1  # not clipped to white

def test_draft_decoding_matches_full_decoding(demo_root):
    path = demo_root / "img_align_celeba" / "000001.jpg"
    fast, _ = data.load_face(path, size=64)
    with Image.open(path) as image:
        full = np.asarray(data.crop_and_resize(image.convert("RGB"), 64))
    assert np.abs(fast.astype(int) - full).mean() < 3


# -- cache ----------------------------------------------------------------------------


def test_cache_contents(demo_cache):
    assert demo_cache.images.shape == (60, 64, 64, 3) and demo_cache.images.dtype == np.uint8
    assert isinstance(demo_cache.images, np.memmap)
    table = demo_cache.table
    assert list(table.columns[:40]) == ATTRS and all(
        pd.api.types.is_bool_dtype(t) for t in table[ATTRS].dtypes
    )
    assert table.index[0] == "000001.jpg" and table.index.is_monotonic_increasing
    assert demo_cache.manifest["split_rule"] == "official"
    assert table["split"].value_counts().to_dict() == {"train": 48, "val": 6, "test": 6}
    assert (table["split"].map({"train": 0, "val": 1, "test": 2}) == table["partition"]).all()
    m = demo_cache.manifest
    assert m["count"] == 60 and m["size"] == 64 and m["layout"] == "official" and m["demo"]
    assert m["crop_rule"] == data.CROP_RULE and len(m["images_sha256"]) == 64 and m["skipped"] == []
    assert demo_cache.images_of("val").shape == (6, 64, 64, 3)
    assert list(demo_cache.attributes_of("test").columns) == ATTRS
    assert "(official partition)" in demo_cache.summary()


def test_cache_is_reused_when_the_request_matches(demo_root, tmp_path):
    first = _prepare(demo_root, tmp_path)
    again = _prepare(demo_root, tmp_path)
    assert again.manifest["build_id"] == first.manifest["build_id"]


def test_manifest_mismatch_rebuilds(demo_copy, tmp_path):
    first = _prepare(demo_copy, tmp_path)
    manifest_path = first.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["request"]["crop_rule"] = "an older rule"
    manifest_path.write_text(json.dumps(manifest))
    rebuilt = _prepare(demo_copy, tmp_path)
    assert rebuilt.manifest["build_id"] != first.manifest["build_id"]

    extra = (
        demo_copy / "img_align_celeba" / "000061.jpg"
    )  # the source changes: no annotation row yet
    extra.write_bytes((demo_copy / "img_align_celeba" / "000001.jpg").read_bytes())
    with pytest.raises(data.AnnotationError, match="000061.jpg"):
        _prepare(demo_copy, tmp_path)
    extra.unlink()
    assert _prepare(demo_copy, tmp_path).manifest["build_id"] == rebuilt.manifest["build_id"]



def test_an_image_replaced_by_one_of_the_same_size_rebuilds_the_cache(demo_copy, tmp_path):
    first = _prepare(demo_copy, tmp_path)
    image = demo_copy / "img_align_celeba" / "000016.jpg"
    content = bytearray(image.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same name, same size, other content
    image.write_bytes(bytes(content))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.CelebaDataWarning)
        again = _prepare(demo_copy, tmp_path)
    assert again.manifest["build_id"] != first.manifest["build_id"]


def test_too_little_free_space_is_refused_before_writing(demo_root, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=300_000))
    with pytest.raises(OSError, match=r"needs 1\.8 MB in .*cache, 0\.3 MB free") as error:
        _prepare(demo_root, tmp_path)
    assert error.value.errno == errno.ENOSPC
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_a_disk_filling_up_during_the_build_is_an_error_not_a_crash(
    demo_root, tmp_path, monkeypatch
):
    class FullDisk(io.BytesIO):
        def write(self, content):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module, "open", lambda path, mode: FullDisk(), raising=False)
    with pytest.raises(OSError, match="No space left") as error:
        _prepare(demo_root, tmp_path)
    assert error.value.errno == errno.ENOSPC
    assert list((tmp_path / "cache").iterdir()) == []  # the temporary folder is gone

def test_interrupted_build_leaves_nothing_that_loads(demo_root, tmp_path, monkeypatch):
    calls = []

    def decode_then_die(job):
        calls.append(job)
        if len(calls) == 1:
            return data.crop.decode_chunk(job)
        raise KeyboardInterrupt  # a killed run, half way through

    monkeypatch.setattr(cache_module, "decode_chunk", decode_then_die)
    monkeypatch.setattr(cache_module, "_CHUNK", 16)
    with pytest.raises(KeyboardInterrupt):
        _prepare(demo_root, tmp_path)
    folder = data.cache_folder(tmp_path / "cache", 64, None)
    assert data.open_cache(folder)[0] is None
    assert list((tmp_path / "cache").iterdir()) == []  # the temporary folder is gone too
    monkeypatch.undo()
    assert len(_prepare(demo_root, tmp_path)) == 60


def test_partial_cache_is_rebuilt(demo_root, tmp_path):
    first = _prepare(demo_root, tmp_path)
    (first.path / "manifest.json").unlink()  # as if killed before the manifest was written
    cache, reason = data.open_cache(first.path)
    assert cache is None and "manifest" in reason
    second = _prepare(demo_root, tmp_path)
    assert second.manifest["build_id"] != first.manifest["build_id"]

    npy = second.path / "images.npy"
    npy.write_bytes(npy.read_bytes()[:5000])  # a truncated image file
    assert data.open_cache(second.path)[0] is None
    assert len(_prepare(demo_root, tmp_path).images) == 60

    stale = tmp_path / "cache" / ".64px.tmp-999999999-x"  # left by a killed process
    stale.mkdir()
    (first.path / "manifest.json").unlink(missing_ok=True)
    _prepare(demo_root, tmp_path, size=32)
    _prepare(demo_root, tmp_path)
    assert not stale.exists()


def test_max_images_and_size_give_their_own_cache(demo_root, tmp_path):
    with pytest.warns(data.CelebaDataWarning, match="fallback"):
        small = _prepare(demo_root, tmp_path, size=32, max_images=10)
    assert small.images.shape == (10, 32, 32, 3)
    assert list(small.table.index) == [f"{i:06d}.jpg" for i in range(1, 11)]
    assert small.path.name == "32px-first10"


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_images_are_skipped_counted_listed_and_warned(
    demo_copy, demo_cache, tmp_path, workers
):
    folder = demo_copy / "img_align_celeba"
    (folder / "000005.jpg").write_bytes(b"this is not a jpeg")
    jpeg = (folder / "000007.jpg").read_bytes()
    (folder / "000007.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # truncated
    with pytest.warns(data.CelebaDataWarning, match=r"skipped 2 unreadable image\(s\)") as record:
        cache = _prepare(demo_copy, tmp_path, workers=workers)
    assert "000005.jpg" in str(record[0].message) and "000007.jpg" in str(record[0].message)
    assert len(cache) == 58 and cache.images.shape[0] == 58
    assert [s["file"] for s in cache.manifest["skipped"]] == ["000005.jpg", "000007.jpg"]
    assert cache.manifest["found"] == 60 and cache.manifest["count"] == 58
    assert "000005.jpg" not in cache.table.index
    row = cache.table.index.get_loc("000008.jpg")  # rows stay aligned after the gaps
    np.testing.assert_array_equal(cache.images[row], demo_cache.images[7])
    assert "skipped: 2" in cache.summary()
    with pytest.warns(data.CelebaDataWarning, match="2 unreadable image"):  # said again on reuse
        _prepare(demo_copy, tmp_path, workers=workers)


# -- splits ---------------------------------------------------------------------------


def test_partition_fallback_for_a_train_only_subset(demo_copy, tmp_path):
    names = sorted(p.name for p in (demo_copy / "img_align_celeba").iterdir())
    (demo_copy / "list_eval_partition.txt").write_text("".join(f"{n} 0\n" for n in names))
    with pytest.warns(data.CelebaDataWarning, match="fallback.*val, test empty"):
        cache = _prepare(demo_copy, tmp_path)
    split = cache.table["split"]
    assert list(split) == ["train"] * 48 + ["val"] * 6 + ["test"] * 6  # file-name order, 80:10:10
    assert cache.manifest["split_rule"].startswith("fallback")
    assert cache.manifest["official_test_images_in_training"] == 0
    assert "fallback split" in cache.summary()
    with pytest.warns(
        data.CelebaDataWarning, match="fallback"
    ):  # said again when the cache is reused
        again = _prepare(demo_copy, tmp_path)
    assert again.manifest["build_id"] == cache.manifest["build_id"]


def test_fallback_says_when_official_test_images_are_trained_on(demo_copy, tmp_path):
    names = sorted(p.name for p in (demo_copy / "img_align_celeba").iterdir())
    (demo_copy / "list_eval_partition.txt").write_text("".join(f"{n} 2\n" for n in names))
    with pytest.warns(data.CelebaDataWarning, match="OFFICIAL TEST images"):
        cache = _prepare(demo_copy, tmp_path)
    assert cache.manifest["official_test_images_in_training"] == 54


def test_assign_splits_rules():
    official = np.array([0] * 8 + [1] + [2])
    split, rule = data.assign_splits(official)
    assert rule == "official" and list(split) == ["train"] * 8 + ["val", "test"]

    with pytest.warns(data.CelebaDataWarning, match="val empty"):
        split, rule = data.assign_splits(
            np.array([0] * 18 + [2] * 2)
        )  # val carved from train's end
    assert list(split) == ["train"] * 16 + ["val"] * 2 + ["test"] * 2

    with pytest.warns(data.CelebaDataWarning, match="no partition file"):
        split, _ = data.assign_splits(np.full(10, -1))
    assert list(split) == ["train"] * 8 + ["val", "test"]

    with pytest.raises(ValueError, match="too few"):
        data.assign_splits(np.array([0, 0]))


def test_assign_splits_by_identity_keeps_every_person_in_one_split():
    identity = np.repeat(np.arange(40), 3)  # 40 people, 3 images each
    with pytest.warns(data.CelebaDataWarning, match="by identity"):
        split, rule = data.assign_splits(np.zeros(120, int), identity)
    people = {s: set(identity[split == s]) for s in data.SPLITS}
    assert [len(people[s]) for s in data.SPLITS] == [32, 4, 4]  # 80:10:10 of the people
    assert not people["train"] & people["val"] and not people["train"] & people["test"]
    assert not people["val"] & people["test"]
    assert "no person is in two splits" in rule
    again, _ = cache_module._assign_splits(np.zeros(120, int), identity)[:2]
    assert list(again) == list(split)  # deterministic
    assert set(split[:3]) != {"train"} or set(split[-30:]) != {"train"}  # not a file-name cut


def test_unknown_identity_falls_back_to_the_file_name_split():
    identity = np.r_[np.repeat(np.arange(6), 3), -1, -1]
    with pytest.warns(data.CelebaDataWarning, match="in file-name order"):
        split, _ = data.assign_splits(np.zeros(20, int), identity)
    assert list(split) == ["train"] * 16 + ["val"] * 2 + ["test"] * 2


def _write_identities(root: Path, per_person: int = 3) -> np.ndarray:
    names = sorted(p.name for p in (root / "img_align_celeba").iterdir())
    identity = np.arange(len(names)) // per_person + 100
    (root / "identity_CelebA.txt").write_text(
        "".join(f"{n} {i}\n" for n, i in zip(names, identity, strict=True))
    )
    (root / "list_eval_partition.txt").write_text("".join(f"{n} 0\n" for n in names))
    return identity


def test_identity_file_gives_a_person_disjoint_cache(demo_copy, tmp_path):
    _write_identities(demo_copy)
    with pytest.warns(data.CelebaDataWarning, match="split by person"):
        cache = _prepare(demo_copy, tmp_path)
    table = cache.table
    assert table["identity"].min() == 100
    splits_per_person = table.groupby("identity")["split"].nunique()
    assert (splits_per_person == 1).all()
    m = cache.manifest
    assert m["identities_in_several_splits"] == 0
    assert m["split_identities"] == {"train": 16, "val": 2, "test": 2}
    assert sum(m["split_counts"].values()) == len(table)
    assert "people: train 16, val 2, test 2 (0 in more than one split)" in cache.summary()


def test_identity_file_change_rebuilds_the_cache(demo_copy, tmp_path):
    _write_identities(demo_copy)
    (demo_copy / "identity_CelebA.txt").rename(tmp_path / "identity_CelebA.txt")
    with pytest.warns(data.CelebaDataWarning, match="in file-name order"):
        first = _prepare(demo_copy, tmp_path)
    assert (first.table["identity"] == -1).all()
    (tmp_path / "identity_CelebA.txt").rename(demo_copy / "identity_CelebA.txt")
    with pytest.warns(data.CelebaDataWarning, match="split by person"):
        second = _prepare(demo_copy, tmp_path)
    assert second.manifest["build_id"] != first.manifest["build_id"]


def test_bad_identity_row_names_file_and_line(demo_copy):
    _write_identities(demo_copy)
    path = demo_copy / "identity_CelebA.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].split()[0] + " x7"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.AnnotationError, match=r"identity_CelebA.txt, line 5: identity is 'x7'"):
        data.read_identities(path)


# -- tf.data --------------------------------------------------------------------------


def test_dataset_shapes_dtypes_and_range(demo_cache):
    import tensorflow as tf

    val = list(data.make_dataset(demo_cache, "val", batch_size=4))
    assert [int(b.shape[0]) for b in val] == [4, 2]
    assert val[0].dtype == tf.float32 and tuple(val[0].shape[1:]) == (64, 64, 3)
    images = np.concatenate([b.numpy() for b in val])
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_allclose(images, demo_cache.images_of("val") / 255.0, atol=1e-6)

    train = data.make_dataset(
        demo_cache, "train", batch_size=16, drop_remainder=True, with_attributes=True
    )
    assert train.element_spec[0].shape.as_list() == [16, 64, 64, 3]
    batches = list(train)
    assert len(batches) == 3
    x, y = batches[0]
    assert y.dtype == tf.float32 and tuple(y.shape) == (16, 40)
    # attributes travel with their own image, also when shuffled
    lookup = {img.tobytes(): row for row, img in enumerate(demo_cache.images)}
    rows = [lookup[np.round(img * 255).astype(np.uint8).tobytes()] for img in x.numpy()]
    np.testing.assert_array_equal(y.numpy(), demo_cache.table[ATTRS].to_numpy(np.float32)[rows])


def test_dataset_shuffle_is_seeded(demo_cache):
    def first_batch(**kwargs):
        return next(iter(data.make_dataset(demo_cache, "train", batch_size=8, **kwargs))).numpy()

    np.testing.assert_array_equal(first_batch(seed=1), first_batch(seed=1))
    assert not np.array_equal(first_batch(seed=1), first_batch(seed=2))
    assert not np.array_equal(first_batch(seed=1), first_batch(shuffle=False))
    with pytest.raises(ValueError, match="split='validation'"):
        data.make_dataset(demo_cache, "validation", batch_size=8)


def test_flip_mirrors_some_images_of_a_batch_and_nothing_else(demo_cache):
    def batch(flip):
        dataset = data.make_dataset(demo_cache, "train", batch_size=32, shuffle=False, flip=flip)
        return next(iter(dataset)).numpy()

    plain, flipped = batch(False), batch(True)
    mirrored = np.array([np.array_equal(f, p[:, ::-1]) for f, p in zip(flipped, plain, strict=True)])
    same = np.array([np.array_equal(f, p) for f, p in zip(flipped, plain, strict=True)])
    assert (mirrored | same).all()  # every image is itself or its mirror image
    assert 0 < mirrored.sum() < len(plain)


# -- demo faces -----------------------------------------------------------------------

# sha256 of the pixels and drawn attributes of demo faces 0-15 of seed 0 (every one of the
# 13 attributes appears among them), recorded before draw_demo_face was split into named
# parts: the demo data, and every demo number computed from it, must not move.
DEMO_FACES_SHA256 = "4926863f46b6f0a8d561ff0e4c9362273ba2bfd7b92e099c8abaeee48d6b3e09"


def test_demo_faces_keep_their_pixels():
    import hashlib

    digest = hashlib.sha256()
    drawn = set()
    for index in range(16):
        image, attrs = demo_module.draw_demo_face(0, index)
        labels = sorted(name for name, value in attrs.items() if value)
        drawn.update(labels)
        digest.update(np.asarray(image).tobytes())
        digest.update(repr(labels).encode())
    assert len(drawn) == 13
    assert digest.hexdigest() == DEMO_FACES_SHA256


def test_demo_is_byte_identical_for_the_same_seed(tmp_path):
    a = data.write_demo_dataset(tmp_path / "a", n=12, seed=3)
    b = data.write_demo_dataset(tmp_path / "b", n=12, seed=3)
    c = data.write_demo_dataset(tmp_path / "c", n=12, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 12 + 4
    assert sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) == files
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "img_align_celeba/000001.jpg").read_bytes() != (
        c / "img_align_celeba/000001.jpg"
    ).read_bytes()


def test_demo_files_follow_the_official_format(demo_root):
    lines = (demo_root / "list_attr_celeba.txt").read_text().splitlines()
    assert lines[0] == "60" and lines[1].split() == ATTRS and len(lines) == 62
    assert lines[2].split()[0] == "000001.jpg" and set(lines[2].split()[1:]) <= {"1", "-1"}
    partition = (demo_root / "list_eval_partition.txt").read_text().split()
    assert partition[:2] == ["000001.jpg", "0"] and partition[-2:] == ["000060.jpg", "2"]
    with Image.open(demo_root / "img_align_celeba" / "000001.jpg") as image:
        assert image.size == (178, 218) and image.format == "JPEG" and image.mode == "RGB"


def test_demo_glasses_are_drawn_exactly_when_labelled(demo_cache):
    glasses = demo_cache.table["Eyeglasses"].to_numpy()
    assert 0 < glasses.sum() < len(glasses)
    np.testing.assert_array_equal(
        data.detect_demo_eyeglasses(demo_cache.images[:] / 255.0), glasses
    )


def test_demo_labels_are_consistent(demo_cache):
    t = demo_cache.table
    hair = t[["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]].sum(axis=1)
    assert (hair == 1).all()
    assert (t["Mustache"] != t["No_Beard"]).all() and not (t["Mustache"] & ~t["Male"]).any()
    drawn = {"Smiling", "Eyeglasses", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Bangs", "Male",
             "No_Beard", "Mustache", "Wearing_Hat", "Pale_Skin", "Wearing_Lipstick"}  # fmt: skip
    assert not t[[a for a in ATTRS if a not in drawn]].to_numpy().any()
    for name in ("Smiling", "Male", "Eyeglasses", "Bangs", "Pale_Skin"):
        assert 0 < t[name].sum() < len(t), name


def test_demo_face_depends_only_on_seed_and_index():
    image_a, attrs_a = data.draw_demo_face(7, 5)
    image_b, attrs_b = data.draw_demo_face(7, 5)
    assert attrs_a == attrs_b and image_a.tobytes() == image_b.tobytes()
    assert image_a.size == (178, 218)


def test_write_demo_refuses_to_overwrite_other_data(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="does not hold demo data"):
        data.write_demo_dataset(tmp_path / "mine", n=3)


def test_load_cache_for_the_demo_profile(tmp_path):
    from resvae_keras.config import get_profile

    config = get_profile(
        "demo", data_dir=str(tmp_path / "demo"), cache_dir=str(tmp_path / "cache"), demo_images=20
    )
    cache = data.load_cache(config, progress=False)
    assert len(cache) == 20 and cache.is_demo and cache.size == 64
    assert demo_module.demo_marker(tmp_path / "demo")["n"] == 20
    stamp = (tmp_path / "demo" / "list_attr_celeba.txt").stat().st_mtime_ns
    assert (
        data.load_cache(config, progress=False).manifest["build_id"] == cache.manifest["build_id"]
    )
    assert (tmp_path / "demo" / "list_attr_celeba.txt").stat().st_mtime_ns == stamp

    bigger = config.replace(demo_images=30, image_size=32)
    cache = data.load_cache(bigger, progress=False)
    assert cache.images.shape == (30, 32, 32, 3)


# -- annotation errors ----------------------------------------------------------------


def test_image_without_annotation_row_names_the_file(demo_copy, tmp_path):
    attr = demo_copy / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(line for line in lines if not line.startswith("000010.jpg")) + "\n")
    with (
        pytest.raises(data.AnnotationError) as error,
        pytest.warns(data.CelebaDataWarning, match="line 1 says 60"),
    ):
        _prepare(demo_copy, tmp_path)
    assert "000010.jpg" in str(error.value) and "list_attr_celeba.txt" in str(error.value)
    assert "lines 3-61" in str(error.value)


def test_image_without_partition_row_names_the_file(demo_copy, tmp_path):
    part = demo_copy / "list_eval_partition.txt"
    part.write_text(
        "".join(
            line + "\n" for line in part.read_text().splitlines() if not line.startswith("000003")
        )
    )
    with pytest.raises(
        data.AnnotationError, match=r"000003\.jpg has no row in .*list_eval_partition\.txt"
    ):
        _prepare(demo_copy, tmp_path)


def test_wrong_header_names_file_and_line(demo_copy):
    attr = demo_copy / "list_attr_celeba.txt"
    attr.write_text(attr.read_text().replace("Smiling", "Smiles", 1))
    with pytest.raises(
        data.AnnotationError, match=r"list_attr_celeba\.txt, line 2: wrong header.*'Smiles'"
    ):
        data.read_attributes(attr)


def test_bad_rows_name_file_and_line(demo_copy):
    attr = demo_copy / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    broken = lines.copy()
    broken[6] = broken[6].replace("-1", "2", 1)  # line 7
    attr.write_text("\n".join(broken) + "\n")
    with pytest.raises(data.AnnotationError, match=r"list_attr_celeba\.txt, line 7: .* is '2'"):
        data.read_attributes(attr)
    broken = lines.copy()
    broken[9] += " 1"  # line 10: 41 values
    attr.write_text("\n".join(broken) + "\n")
    with pytest.raises(
        data.AnnotationError, match=r"line 10: expected an image name and 40 values, found 41"
    ):
        data.read_attributes(attr)
    broken = lines.copy()
    broken[11] = broken[4]  # line 12 repeats line 5
    attr.write_text("\n".join(broken) + "\n")
    with pytest.raises(
        data.AnnotationError, match=r"line 12: 000003\.jpg already has a row on line 5"
    ):
        data.read_attributes(attr)


def test_csv_annotations_and_their_header(demo_root, tmp_path):
    csv = tmp_path / "list_attr_celeba.csv"
    _txt_to_csv(demo_root / "list_attr_celeba.txt", csv, header=None)
    pd.testing.assert_frame_equal(
        data.read_attributes(csv), data.read_attributes(demo_root / "list_attr_celeba.txt")
    )
    csv.write_text(csv.read_text().replace("Young", "Old", 1))
    with pytest.raises(data.AnnotationError, match=r"list_attr_celeba\.csv, line 1: wrong header"):
        data.read_attributes(csv)


# -- the real CelebA samples (skipped when absent) ------------------------------------


def test_real_subset_prepares_a_handful(shared_data, tmp_path):
    root = shared_data / "celeba_subset_89x109"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    with pytest.warns(data.CelebaDataWarning, match="fallback"):  # the subset is all official train
        cache = _prepare(root, tmp_path, max_images=12)
    assert cache.images.shape == (12, 64, 64, 3)
    assert cache.manifest["source_sizes"] == {"89x109": 12} and not cache.is_demo
    first = cache.table.loc["000001.jpg"]
    assert first["Smiling"] and first["Brown_Hair"] and first["Young"] and not first["Male"]
    assert 40 < cache.images.mean() < 215  # a real photo, neither blank nor saturated
    assert cache.table["identity"].min() >= 0  # identity_CelebA.txt was read
    assert cache.manifest["identities_in_several_splits"] == 0


def test_real_test_partition_images_warn_when_trained_on(shared_data, tmp_path):
    root = shared_data / "celeba_test_facecrops"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    with pytest.warns(data.CelebaDataWarning, match="OFFICIAL TEST"):
        cache = _prepare(root, tmp_path, max_images=10)
    assert cache.images.shape == (10, 64, 64, 3)


# -- image conversions ------------------------------------------------------------------


def _all_byte_values():
    return np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)


def test_float_and_uint8_conversions_round_trip_and_name_the_argument():
    x8 = _all_byte_values()
    x = data.as_float_images(x8)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert data.as_float_images(x) is x  # float32 input is not copied
    np.testing.assert_array_equal(data.to_uint8(x), x8)
    with pytest.raises(ValueError, match="`faces` must be a batch"):
        data.as_float_images(x[0], name="faces")
    with pytest.raises(ValueError, match=r"`images` must hold values in \[0, 1\]"):
        data.as_float_images(x * 255.0)


def test_display_path_never_shows_the_machine_layout(tmp_path, monkeypatch):
    from resvae_keras.data._io import display_path

    home = tmp_path / "home"
    root = home / "work" / "proj"
    monkeypatch.setenv("RESVAE_HOME", str(root))
    monkeypatch.setenv("HOME", str(home))
    assert display_path(root / "runs" / "x") == "runs/x"
    assert display_path(root) == "."
    # a sibling whose name starts with the root's name is not inside the project
    assert display_path(home / "work" / "proj_cases" / "x") == "../proj_cases/x"
    assert display_path(home / ".keras" / "models" / "w.h5") == "~/.keras/models/w.h5"
    assert display_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    # a home folder beside the checkout but apart from it (checkouts under /tmp, a test's home)
    monkeypatch.setenv("HOME", str(tmp_path / "other_home"))
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path / "proj"))
    assert display_path(tmp_path / "other_home" / ".keras" / "w.h5") == "~/.keras/w.h5"
    assert display_path(tmp_path / "proj_cases" / "x") == "../proj_cases/x"


def test_display_path_survives_a_symlink_loop(tmp_path):
    from resvae_keras.data._io import display_path

    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    assert display_path(tmp_path / "a.jpg").endswith("a.jpg")


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    from resvae_keras.data._io import atomic_write

    path = tmp_path / "metrics.json"
    with atomic_write(path) as tmp:
        assert tmp.name == f".metrics.tmp-{os.getpid()}.json"
        tmp.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_data_notes_print_to_stdout_in_a_jupyter_kernel(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # as inside a notebook's kernel
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", data._showwarning)
        warnings.warn("fallback by identity: split by person", data.CelebaDataWarning, stacklevel=1)
    out, err = capsys.readouterr()
    assert out == "CelebaDataWarning: fallback by identity: split by person\n" and err == ""
