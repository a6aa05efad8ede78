"""One dataclass for a whole run, plus the named profiles ``demo`` (synthetic faces, CPU
in a minute), ``celeba-subset`` (partial CelebA, CPU) and ``celeba`` (full CelebA, GPU).
Paths in a config are relative to the project root.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("demo", "celeba-subset", "celeba")
CLI_OPTIONS = (
    "epochs", "batch_size", "learning_rate", "beta", "kl_warmup_steps", "sigma_min", "latent_dim",
    "widths", "blocks_per_stage", "image_size", "likelihood", "kind", "residual", "seed",
    "max_images", "architecture", "norm", "strategy", "mixed_precision", "data_dir", "run_dir",
    "two_stage_epochs", "cache_dir", "flip", "lr_schedule", "lr_warmup_steps", "optimizer",
    "weight_decay",
)  # fmt: skip


def option_name(field_name: str) -> str:
    """``latent_dim`` -> ``--latent-dim``; ``residual`` -> ``--plain`` (sets it to False)."""
    return "--plain" if field_name == "residual" else "--" + field_name.replace("_", "-")


def reject_setting(settings, name: str, expected: str):
    """Raise ``ValueError`` naming ``settings.<name>`` (of a ``Config`` or a ``ResVAE``)."""
    value = getattr(settings, name)
    raise ValueError(f"{name}={value!r} ({option_name(name)}): expected {expected}")


def project_root() -> Path:
    """The checkout holding ``pyproject.toml``: ``RESVAE_HOME``, else the current directory
    or a parent, else the checkout of this package, else the current directory."""
    if os.environ.get("RESVAE_HOME"):
        return Path(os.environ["RESVAE_HOME"]).resolve()
    here = Path.cwd().resolve()
    package_parent = Path(__file__).resolve().parents[1]
    for folder in (here, *here.parents, package_parent):
        if (folder / "pyproject.toml").is_file() and (folder / "resvae_keras").is_dir():
            return folder
    return here


def checkout_file(relative: str) -> Path:
    """``relative`` under ``project_root()``, for files only a checkout holds (not a wheel);
    ``FileNotFoundError`` otherwise."""
    root = project_root()
    path = root / relative
    if path.is_file():
        return path
    raise FileNotFoundError(
        f"{relative} is not under {root}: this needs a checkout of the project (a clone of "
        "its repository), which the installed package does not contain. Run the command "
        "inside the clone, or set RESVAE_HOME to the clone's folder."
    )


@dataclass
class Config:
    """Everything a run needs; saved as ``config.json`` in the run dir.

    ``data_dir`` ``None`` means ``CELEBA_DIR``, else ``data/celeba``; ``batch_size`` is per
    worker; the evaluation sizes are the images notebooks 03-06 use.
    """

    profile: str = "demo"
    # data
    data_dir: str | None = None
    cache_dir: str = "data/cache"
    image_size: int = 64
    max_images: int | None = None
    demo_images: int = 3000
    # model
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_stage: int = 2
    latent_dim: int = 128
    residual: bool = True
    norm: str = "group"  # "group", "batch" or "none"
    architecture: str = "resnet"  # or "conv", the shallow textbook VAE
    kind: str = "vae"  # or "ae", the deterministic autoencoder
    likelihood: str = "gaussian_learned"  # see model.RECONSTRUCTION_LIKELIHOODS
    beta: float = 1.0
    sigma_min: float = 0.0
    kl_warmup_steps: int = 0  # beta ramps linearly from 0 over these steps
    # training
    batch_size: int = 64
    epochs: int = 10
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "none"  # "none", "mirrored" or "auto" (distribute.make_strategy)
    mixed_precision: str | None = None  # or "mixed_float16", "mixed_bfloat16"
    run_dir: str | None = None
    grid_every: int = 1
    two_stage_epochs: int = 50  # 0: no second stage
    flip: bool = False  # mirror training images left-right with probability 1/2
    lr_schedule: str = "constant"  # or "cosine" (train.learning_rate)
    lr_warmup_steps: int = 0
    optimizer: str = "adam"  # or "adamw", with decoupled weight_decay
    weight_decay: float = 0.0
    # evaluation sizes
    eval_images: int = 10_000
    eval_samples: int = 10_000
    latent_codes: int = 20_000
    anomaly_images: int = 2_000

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from this config, made absolute against the project root."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else project_root() / path

    @property
    def run_path(self) -> Path:
        return self.resolve(self.run_dir or f"runs/{self.profile}")

    @property
    def cache_path(self) -> Path:
        return self.resolve(self.cache_dir)

    @property
    def is_demo(self) -> bool:
        return self.profile == "demo"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` atomically."""
        from resvae_keras.data._io import atomic_write

        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        """A saved ``config.json``; unknown keys are ignored, an old ``extra.norm`` is read."""
        try:
            values = json.loads(Path(path).read_text())
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); restore it (a run's "
                             "config.json is written by train) or fix it by hand") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path} holds a JSON {type(values).__name__}, not an object "
                             "of settings; restore it (train writes it)")
        extra = values.pop("extra", None) or {}
        if "norm" in extra:
            values.setdefault("norm", extra["norm"])
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        wrong = [f"{k}={v!r} (expected {known[k]})" for k, v in values.items()
                 if not _has_type(v, known[k])]
        if wrong:
            raise ValueError(f"{path} holds settings of the wrong type: {', '.join(wrong)}; "
                             "restore it, or fix those values by hand")
        return cls(**values)

    def replace(self, **overrides) -> Config:
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known: {known}")
        return dataclasses.replace(self, **overrides)

    def train_command(self, **overrides) -> str:
        """The ``python -m resvae_keras train`` command of this config with ``overrides``."""
        config = self.replace(**overrides)
        base = get_profile(config.profile)
        words = ["python", "-m", "resvae_keras", "train", "--profile", config.profile]
        for name in CLI_OPTIONS:
            value, default = getattr(config, name), getattr(base, name)
            if value == default or (value is None and name != "mixed_precision"):
                continue
            if isinstance(value, bool):  # a bare flag: --plain or --flip
                words.append(option_name(name))
            elif name == "widths":
                words += ["--widths", ",".join(str(w) for w in value)]
            else:
                words += [option_name(name), "float32" if value is None else str(value)]
        return shlex.join(words)


def _has_type(value, annotation: str) -> bool:
    """True when a JSON ``value`` fits a ``Config`` field annotated ``annotation``."""
    if value is None:
        return annotation.endswith("| None")
    kind = annotation.split(" |")[0]
    if kind == "tuple[int, ...]":
        return isinstance(value, list) and all(_has_type(v, "int") for v in value)
    types = {"bool": bool, "int": int, "float": (int, float), "str": str}.get(kind, object)
    return isinstance(value, types) and isinstance(value, bool) == (kind == "bool")


_PROFILE_OVERRIDES: dict[str, dict] = {
    "demo": dict(
        data_dir="data/demo",
        cache_dir="data/cache/demo",
        widths=(16, 32, 64),
        blocks_per_stage=1,
        latent_dim=32,
        epochs=5,
        learning_rate=2e-3,
        two_stage_epochs=20,
        eval_images=300,
        eval_samples=120,
        latent_codes=2400,
        anomaly_images=150,
    ),
    # latent 256 and AdamW won the lever sweep (report/results/levers/levers.csv); 10 epochs
    # fit the 50-minute CPU budget; beta warms up over the first 2
    "celeba-subset": dict(
        cache_dir="data/cache/celeba-subset",
        latent_dim=256,
        optimizer="adamw",
        weight_decay=0.01,
        epochs=10,
        kl_warmup_steps=250,
    ),
    "celeba": dict(
        cache_dir="data/cache/celeba",
        widths=(64, 128, 256, 512),
        batch_size=128,
        epochs=40,
        kl_warmup_steps=5000,
        mixed_precision="mixed_float16",
    ),
}


def get_profile(name: str, **overrides) -> Config:
    """The named profile with ``overrides`` applied on top."""
    if name not in _PROFILE_OVERRIDES:
        raise ValueError(f"profile={name!r} is not one of {list(PROFILES)}")
    return Config(profile=name, **_PROFILE_OVERRIDES[name]).replace(**overrides)


def profile_from_env(default: str | None = None) -> str:
    """``RESVAE_PROFILE``, else ``default``, else with ``CELEBA_DIR`` set ``celeba`` (GPU) or
    ``celeba-subset`` (no GPU; printed), else ``demo``."""
    name = os.environ.get("RESVAE_PROFILE")
    if name:
        if name not in PROFILES:
            raise ValueError(f"RESVAE_PROFILE={name!r} is not one of {list(PROFILES)}")
        return name
    if default:
        return default
    if not os.environ.get("CELEBA_DIR"):
        return "demo"
    gpu = gpu_visible()
    name = "celeba" if gpu else "celeba-subset"
    print(
        f"profile {name}: CELEBA_DIR is set and {'a' if gpu else 'no'} GPU is visible "
        "(set RESVAE_PROFILE to choose another)",
        file=sys.stderr,
    )
    return name


def gpu_visible() -> bool:
    """True when TensorFlow sees at least one GPU (imports TensorFlow; runs no op)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def config_from_env(**overrides) -> Config:
    """The config of ``profile_from_env()`` with ``overrides``."""
    return get_profile(profile_from_env(), **overrides)


class ProfileMismatchError(RuntimeError):
    """Run All of a course notebook in JupyterLab would replace its saved outputs."""


def notebook_config(saved_profile: str = "celeba-subset", **overrides) -> Config:
    """``config_from_env(**overrides)``; in JupyterLab, a course notebook (``NN_name.ipynb``)
    whose implicit profile differs from ``saved_profile`` (the profile of its committed
    outputs) raises ``ProfileMismatchError``."""
    name = profile_from_env()
    notebook = Path(os.environ.get("JPY_SESSION_NAME", "")).name
    implicit = not os.environ.get("RESVAE_PROFILE")
    if implicit and name != saved_profile and re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", notebook):
        raise ProfileMismatchError(
            f"{notebook} menyimpan hasil profil {saved_profile!r}; profil sekarang {name!r}, dan "
            "Run All akan menimpa hasil itu. Simpan salinan (File > Save Notebook As...), matikan "
            "kernel (Kernel > Shut Down Kernel) dan jalankan salinannya; atau pilih profil dengan "
            "`%env RESVAE_PROFILE=demo` di sel pertama.\n"
            f"{notebook} holds the outputs of the {saved_profile!r} profile; this run would use "
            f"{name!r} and Run All would overwrite them. Save a copy (File > Save Notebook As...), "
            "shut its kernel down and run the copy, or choose the profile with "
            "`%env RESVAE_PROFILE=demo` in a first cell."
        )
    return get_profile(name, **overrides)
