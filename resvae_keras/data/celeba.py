"""Finding CelebA on disk and reading its annotation files.

Accepted layouts under one root: ``official`` (``img_align_celeba/``), ``kaggle``
(``img_align_celeba/img_align_celeba/``, ``.csv`` annotations), ``google-drive``
(``Img/``, ``Anno/``, ``Eval/``) and ``zip`` (``img_align_celeba.zip``, read in place).
Annotation files are found independently of the image layout.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import project_root
from ._io import display_path

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair",
    "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

SPLITS = ("train", "val", "test")  # the official partition ids 0, 1, 2

README_SECTION = 'README.md, section "Getting CelebA"'

# (layout, folder or zip relative to the root); the first one that holds images wins
_IMAGE_CANDIDATES = (
    ("official", "img_align_celeba"),
    ("kaggle", "img_align_celeba/img_align_celeba"),
    ("google-drive", "Img/img_align_celeba"),
    ("zip", "img_align_celeba.zip"),
    ("zip", "Img/img_align_celeba.zip"),
)
_ATTRIBUTE_CANDIDATES = (
    "list_attr_celeba.txt",
    "Anno/list_attr_celeba.txt",
    "list_attr_celeba.csv",
    "Anno/list_attr_celeba.csv",
)
_PARTITION_CANDIDATES = (
    "list_eval_partition.txt", "Eval/list_eval_partition.txt", "Anno/list_eval_partition.txt",
    "list_eval_partition.csv", "Eval/list_eval_partition.csv",
)  # fmt: skip
_IDENTITY_CANDIDATES = ("identity_CelebA.txt", "Anno/identity_CelebA.txt")


class CelebaNotFoundError(FileNotFoundError):
    """No usable CelebA folder; the message lists every path tried."""


class AnnotationError(ValueError):
    """An annotation file is malformed or lacks a row; the message names the file and line."""


class CelebaDataWarning(UserWarning):
    """Something about the data the user should know (skipped images, fallback split)."""


@dataclass(frozen=True)
class CelebaSource:
    """Where one CelebA copy lives; ``images`` is a folder or a zip file."""

    root: Path
    layout: str
    images: Path
    attributes_file: Path
    partition_file: Path | None
    identity_file: Path | None = None

    @property
    def is_zip(self) -> bool:
        return self.images.suffix.lower() == ".zip"

    def list_images(self) -> dict[str, str]:
        """Present images: file name -> name inside the folder or zip, sorted by file name."""
        if self.is_zip:
            with zipfile.ZipFile(self.images) as archive:
                members = {}
                for info in archive.infolist():
                    name = info.filename.rsplit("/", 1)[-1]
                    if not info.is_dir() and _is_image_name(name):
                        members.setdefault(name, info.filename)
        else:
            members = {e.name: e.name for e in os.scandir(self.images)
                       if _is_image_name(e.name) and e.is_file()}
        return dict(sorted(members.items()))

    def fingerprint(self, names: list[str]) -> str:
        """sha256 over the images' names, sizes and CRC-32s and the annotation files: changes
        with any image or annotation, not when the folder moves."""
        digest = hashlib.sha256()
        if self.is_zip:
            with zipfile.ZipFile(self.images) as archive:
                by_name = {i.filename.rsplit("/", 1)[-1]: i for i in archive.infolist()}
                for name in names:
                    info = by_name[name]
                    digest.update(f"{name}:{info.file_size}:{info.CRC}\n".encode())
        else:
            for name in names:
                content = (self.images / name).read_bytes()
                digest.update(f"{name}:{len(content)}:{zlib.crc32(content)}\n".encode())
        for path in (self.attributes_file, self.partition_file, self.identity_file):
            digest.update((hashlib.sha256(path.read_bytes()).hexdigest() if path else "none")
                          .encode())
        return digest.hexdigest()


def _is_image_name(name: str) -> bool:
    return name.lower().endswith((".jpg", ".jpeg", ".png")) and not name.startswith(".")


def find_celeba(celeba_dir: str | os.PathLike | None = None) -> CelebaSource:
    """Locate CelebA images and annotation files under ``celeba_dir``, else ``CELEBA_DIR``,
    else ``data/celeba``; ``CelebaNotFoundError`` names every path tried."""
    if celeba_dir is not None:
        root, origin = Path(celeba_dir).expanduser(), "argument"
    elif os.environ.get("CELEBA_DIR"):
        root, origin = Path(os.environ["CELEBA_DIR"]).expanduser(), "CELEBA_DIR"
    else:
        root, origin = project_root() / "data" / "celeba", "default data/celeba"
    layout, images = next(((layout, root / relative) for layout, relative in _IMAGE_CANDIDATES
                           if root.is_dir() and _holds_images(root / relative)), (None, None))
    if images is None:
        tried = [root / relative for _, relative in _IMAGE_CANDIDATES] if root.is_dir() else [root]
        raise CelebaNotFoundError(_not_found_message("CelebA images", root, origin, tried))
    attributes = _first_file(root, _ATTRIBUTE_CANDIDATES)
    if attributes is None:
        tried = [root / c for c in _ATTRIBUTE_CANDIDATES]
        raise CelebaNotFoundError(_not_found_message("the attribute file", root, origin, tried))
    return CelebaSource(root=root, layout=layout, images=images, attributes_file=attributes,
                        partition_file=_first_file(root, _PARTITION_CANDIDATES),
                        identity_file=_first_file(root, _IDENTITY_CANDIDATES))


def _holds_images(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return path.is_file() and zipfile.is_zipfile(path)
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:
        return any(_is_image_name(e.name) and e.is_file() for e in entries)


def _first_file(root: Path, candidates) -> Path | None:
    return next((root / c for c in candidates if (root / c).is_file()), None)


def _not_found_message(what: str, root: Path, origin: str, tried: list[Path]) -> str:
    lines = []
    for path in tried:  # a path that exists says why it was passed over
        why = ""
        if path.suffix.lower() == ".zip" and path.is_file():
            why = (f" (exists, {path.stat().st_size:,} bytes, but is not a readable zip: "
                   "truncated or corrupt; download it again)")
        elif path.is_dir():
            why = " (exists, but holds no .jpg or .png image)"
        lines.append(f"  - {display_path(path)}{why}")
    return (
        f"could not find {what} for CelebA root {display_path(root)} (from {origin}). "
        "Paths tried:\n" + "\n".join(lines) + "\n"
        f"Download CelebA and point CELEBA_DIR (or data_dir) at it; see {README_SECTION} "
        "for the accepted layouts. For a quick start without CelebA use the demo profile "
        "(RESVAE_PROFILE=demo), which generates synthetic faces."
    )


def read_attributes(path: str | os.PathLike) -> pd.DataFrame:
    """``list_attr_celeba.txt`` or ``.csv`` as 40 bool columns (1 -> True) indexed by file
    name; ``AnnotationError`` names the file and line of any malformed content."""
    table, count = _read_annotation(path, ATTRIBUTE_NAMES, (-1, 0, 1))
    if count is not None and int(count) != len(table):
        warnings.warn(
            f"{Path(path).name} line 1 says {count} images but the file has {len(table)} rows; "
            "using the rows",
            CelebaDataWarning,
            stacklevel=2,
        )
    return table.eq(1)


def read_partition(path: str | os.PathLike) -> pd.Series:
    """``list_eval_partition.txt`` or ``.csv`` as an int8 Series indexed by file name."""
    return _read_annotation(path, ("partition",), (0, 1, 2))[0]["partition"]


def read_identities(path: str | os.PathLike) -> pd.Series:
    """``identity_CelebA.txt`` as an int32 Series of person ids indexed by file name."""
    return _read_annotation(path, ("identity",), None)[0]["identity"]


def _read_annotation(path, columns: tuple[str, ...], allowed) -> tuple[pd.DataFrame, str | None]:
    """The rows of an annotation file and the image count on its first line (or ``None``).
    ``allowed``: the values of int8 columns, or ``None`` for non-negative int32 ones."""
    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise AnnotationError(
            f"{path}, line {line}: not UTF-8 text ({error.reason}); is this an annotation file?"
        ) from None
    lines = text.splitlines()
    first = lines[0].split() if lines else []
    header_lines = 1 if csv or columns == ATTRIBUTE_NAMES else 0
    count = None
    if not csv and header_lines and len(first) == 1 and first[0].isdigit():
        count, header_lines = first[0], 2
    header = lines[header_lines - 1] if 0 < header_lines <= len(lines) else ""
    found = tuple(n.strip() for n in (header.split(",")[1:] if csv else header.split()))
    if header_lines and found != columns:
        if len(found) != len(columns):
            problem = f"found {len(found)} names, expected {len(columns)}"
        else:
            i = next(i for i, (f, e) in enumerate(zip(found, columns, strict=True)) if f != e)
            problem = f"column {i + 1} is {found[i]!r}, expected {columns[i]!r}"
        raise AnnotationError(
            f"{path}, line {header_lines}: wrong header ({problem}). Expected the official names "
            f"{' '.join(columns[:3])} ... {columns[-1]}; re-download the file "
            f"(see {README_SECTION})."
        )
    try:
        table = pd.read_csv(
            io.StringIO(text), sep="," if csv else r"\s+", header=None, names=["image", *columns],
            skiprows=header_lines, index_col=False, dtype={"image": str}, engine="c",
        )  # fmt: skip
        values = table[list(columns)]
        ok = (
            table["image"].notna().all()
            and all(pd.api.types.is_integer_dtype(t) for t in values.dtypes)
            and (values.isin(allowed).all().all() if allowed else (values >= 0).all().all())
            and not table["image"].duplicated().any()
        )
    except (pd.errors.ParserError, ValueError):
        ok = False
    if not ok:
        _scan_rows(path, lines, header_lines, columns, csv, allowed)  # raises with the line
        raise AnnotationError(f"{path}: could not parse the rows after line {header_lines}")
    table = table.set_index("image").astype(np.int8 if allowed else np.int32)
    table.attrs["first_row_line"] = header_lines + 1
    return table, count


def _scan_rows(path: Path, lines: list[str], header_lines: int, columns, csv: bool,
               allowed) -> None:
    seen: dict[str, int] = {}
    allowed_text = {str(v) for v in allowed} if allowed else None
    for number, line in enumerate(lines[header_lines:], start=header_lines + 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")] if csv else line.split()
        where = f"{path}, line {number}"
        if len(parts) != len(columns) + 1:
            raise AnnotationError(
                f"{where}: expected an image name and {len(columns)} values, "
                f"found {len(parts) - 1} values"
            )
        for column, value in zip(columns, parts[1:], strict=True):
            if not (value.isdigit() if allowed_text is None else value in allowed_text):
                expected = ("a non-negative integer" if allowed_text is None
                            else f"one of {sorted(allowed_text)}")
                raise AnnotationError(f"{where}: {column} is {value!r}, expected {expected}")
        if parts[0] in seen:
            raise AnnotationError(f"{where}: {parts[0]} already has a row on line {seen[parts[0]]}")
        seen[parts[0]] = number


def annotations_for(source: CelebaSource, names: list[str]) -> pd.DataFrame:
    """The 40 attributes plus ``partition`` and ``identity`` (-1 without their file) of
    ``names``; ``AnnotationError`` for the first image with no row in a file."""
    table = pd.DataFrame(index=pd.Index(names, name="image"))
    for column, path, read, unknown in (
        (list(ATTRIBUTE_NAMES), source.attributes_file, read_attributes, None),
        ("partition", source.partition_file, read_partition, np.int8(-1)),
        ("identity", source.identity_file, read_identities, np.int32(-1)),
    ):
        if path is None:
            table[column] = unknown
            continue
        rows = read(path)
        missing = pd.Index(names).difference(rows.index)
        if len(missing):
            start = rows.attrs.get("first_row_line", 1)
            raise AnnotationError(
                f"image {display_path(source.images)}/{missing[0]} has no row in {path} "
                f"(rows on lines {start}-{start + len(rows.index) - 1}; {len(missing)} present "
                "image(s) lack one). "
                "Images and annotation files must come from the same CelebA release; "
                f"re-download the annotations (see {README_SECTION}) or remove the extra images."
            )
        table[column] = rows.loc[names].to_numpy()
    return table
