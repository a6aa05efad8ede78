"""One dataclass for a whole run, plus the named profiles.

A profile is a set of overrides on top of the defaults:

| profile         | data                                       | meant for                      |
| --------------- | ------------------------------------------ | ------------------------------ |
| ``demo``        | the embedded synthetic faces (``data/demo``) | all of training in < 60 s, CPU |
| ``celeba-subset`` | any partial CelebA (``CELEBA_DIR``)      | 10 CPU epochs, about 50 min   |
| ``celeba``      | full CelebA (``CELEBA_DIR``)               | a GPU run                      |

Paths in a config are relative to the project root (the folder holding
``pyproject.toml``), so notebooks running inside ``notebooks/`` and the CLI
running at the top level share one ``runs/`` and one ``figures/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
"""Config fields the ``train`` command line sets, each through ``option_name(field)``."""


def option_name(field_name: str) -> str:
    """The command-line option of a config field: ``latent_dim`` -> ``--latent-dim``
    (``residual`` -> ``--plain``, which sets it to False)."""
    return "--plain" if field_name == "residual" else "--" + field_name.replace("_", "-")


#: Boolean config fields that a bare command-line flag sets: field -> value the flag gives.
FLAGS = {"residual": False, "flip": True}


def project_root() -> Path:
    """The folder holding this project's ``pyproject.toml``: a checkout (clone) of the project.

    ``RESVAE_HOME`` wins when set. Otherwise the current directory and its parents
    are searched (so a notebook in ``notebooks/`` finds the top level), then the
    checkout this package was imported from. An installed package used outside any
    checkout falls back to the current directory: ``runs/``, ``data/`` and ``figures/``
    go there. What only a checkout has (the report's sources) goes through
    ``checkout_file``, which says so instead of falling back.
    """
    if os.environ.get("RESVAE_HOME"):
        return Path(os.environ["RESVAE_HOME"]).resolve()
    here = Path.cwd().resolve()
    package_parent = Path(__file__).resolve().parents[1]
    for folder in (here, *here.parents, package_parent):
        if (folder / "pyproject.toml").is_file() and (folder / "resvae_keras").is_dir():
            return folder
    return here


def checkout_file(relative: str) -> Path:
    """``relative`` (e.g. ``"report/laporan.toml"``) under ``project_root()``, for the files
    that only a checkout of the project holds, not an installed wheel.

    Raises:
        FileNotFoundError: the file is not there; the message says to run inside a clone
            of the repository or to set ``RESVAE_HOME`` to one.
    """
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

    Data:
        data_dir: CelebA root (any layout ``data.find_celeba`` knows). ``None`` means
            ``CELEBA_DIR``, else ``data/celeba``; the ``demo`` profile uses ``data/demo``
            and generates it when missing.
        cache_dir: where the preprocessed uint8 cache goes.
        image_size: side of the square images, pixels (64; 32 and 128 also work).
        max_images: keep only the first N images (``None``: all), for quick runs.
    Model:
        widths: channels per resolution stage of the encoder (the decoder mirrors it).
        blocks_per_stage: residual blocks per stage.
        latent_dim: size of z.
        residual: ``False`` drops every shortcut (the plain-VAE ablation).
        norm: ``"group"``, ``"batch"`` or ``"none"``: the normalization in the residual
            blocks and before the heads (see ``layers.make_normalization``).
        architecture: ``"resnet"`` (the ResVAE) or ``"conv"``, the shallow textbook
            convolutional VAE (see ``model.ARCHITECTURES``); ``blocks_per_stage`` and
            ``residual`` apply to ``"resnet"`` only.
        kind: ``"vae"``, or ``"ae"`` for the deterministic autoencoder baseline.
        likelihood: ``"gaussian_learned"``, ``"gaussian"`` or ``"bernoulli"``
            (see ``model.RECONSTRUCTION_LIKELIHOODS``).
        beta: weight of the KL term (>= 0).
        sigma_min: floor on the learned decoder sigma (0: none, every profile; see
            ``model.ResVAE``: a floor is a hidden beta, kept only to reproduce the former
            default).
        kl_warmup_steps: beta ramps linearly from 0 over this many steps (0: off).
    Training:
        flip: mirror each training image left-right with probability 1/2 (faces are
            nearly symmetric, so this doubles the data at no cost).
        lr_schedule: ``"constant"``, or ``"cosine"``: a linear warm-up over
            ``lr_warmup_steps`` optimizer steps to ``learning_rate``, then a cosine decay to
            0 at the last step of ``epochs``.
        optimizer: ``"adam"``, or ``"adamw"`` (Adam with decoupled ``weight_decay``).
        batch_size, epochs, learning_rate, seed: as usual; seed fixes data order,
            weights and sampling noise. batch_size is per worker: with several workers
            (``TF_CONFIG``) a step trains on ``batch_size * workers`` images.
        strategy: ``"none"``, ``"mirrored"`` or ``"auto"`` (see ``distribute.make_strategy``).
        mixed_precision: ``None``, ``"mixed_float16"`` (GPU) or ``"mixed_bfloat16"``.
        run_dir: output folder; ``None`` means ``runs/<profile>``.
        two_stage_epochs: epochs of the second-stage VAE fitted on the codes after
            training (``latent.TwoStageSampler``; seconds to minutes); 0 skips it after
            training, and ``evaluate`` then fits it with the sampler's default epochs.
    Evaluation (how many images notebooks 03-06 use; the ``demo`` profile shrinks them):
        eval_images: test faces whose reconstructions are measured (notebook 03).
        eval_samples: samples per sampler, and real faces to compare them with (notebook
            04); 10,000 is the least for FIDs comparable across papers.
        latent_codes: training faces encoded for attribute vectors and latent fits
            (notebook 05).
        anomaly_images: clean test faces, and as many of each anomaly (notebook 06).
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
    norm: str = "group"
    architecture: str = "resnet"
    kind: str = "vae"
    likelihood: str = "gaussian_learned"
    beta: float = 1.0
    sigma_min: float = 0.0
    kl_warmup_steps: int = 0
    # training
    batch_size: int = 64
    epochs: int = 10
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "none"
    mixed_precision: str | None = None
    run_dir: str | None = None
    grid_every: int = 1
    two_stage_epochs: int = 50
    flip: bool = False
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    # evaluation sizes
    eval_images: int = 10_000
    eval_samples: int = 10_000
    latent_codes: int = 20_000
    anomaly_images: int = 2_000

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)

    # -- paths ---------------------------------------------------------------
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

    # -- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` through a temporary file: ``path`` is never half written."""
        from resvae_keras.data._io import atomic_write

        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        """A saved ``config.json``. Unknown keys are ignored; files written before ``norm``
        was a field keep it in ``extra`` and load the same."""
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
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(
                f"unknown config field(s) {sorted(unknown)}; "
                f"known: {[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **overrides)

    def train_command(self, **overrides) -> str:
        """The ``python -m resvae_keras train`` command that trains this config (with
        ``overrides``): options for every ``CLI_OPTIONS`` field that differs from the profile."""
        config = self.replace(**overrides)
        base = get_profile(config.profile)
        words = ["python", "-m", "resvae_keras", "train", "--profile", config.profile]
        for name in CLI_OPTIONS:
            value, default = getattr(config, name), getattr(base, name)
            if value == default or (value is None and name != "mixed_precision"):
                continue
            if name in FLAGS:
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
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, {"int": int, "float": (int, float), "str": str}.get(kind, object))


_PROFILE_OVERRIDES: dict[str, dict] = {
    "demo": dict(
        data_dir="data/demo",
        cache_dir="data/cache/demo",
        demo_images=3000,
        widths=(16, 32, 64),
        blocks_per_stage=1,
        latent_dim=32,
        batch_size=64,
        epochs=5,
        learning_rate=2e-3,
        two_stage_epochs=20,
        eval_images=300,
        eval_samples=120,
        latent_codes=2400,
        anomaly_images=150,
    ),
    # The lever sweep (``levers.LEVERS``, report/results/levers/levers.csv, validation split)
    # kept latent size 256 (+0.2 dB PSNR and a lower bound than 128 at an equal budget) and
    # AdamW (+0.2 dB, a lower bound), and dropped the cosine schedule (-0.6 dB) and the flip
    # (+0.04 dB, within noise). 10 epochs fit the 50-minute CPU budget at the measured ~280 s
    # per epoch; beta warms up over the first 2 of them.
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
        blocks_per_stage=2,
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
    """The profile to use when none is named; the one rule of the CLI and the notebooks.

    1. ``RESVAE_PROFILE``, when set, wins.
    2. Else ``default``, when given.
    3. Else, with ``CELEBA_DIR`` set: ``celeba`` when TensorFlow sees a GPU, otherwise
       ``celeba-subset`` (the CPU-sized model); the choice is printed to stderr.
    4. Else ``demo``.
    """
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
    """The config a notebook uses: ``RESVAE_PROFILE`` (see ``profile_from_env``)."""
    return get_profile(profile_from_env(), **overrides)


SAVED_PROFILE = "celeba-subset"
"""The profile whose outputs the committed notebooks show."""


class ProfileMismatchError(RuntimeError):
    """Run All of a course notebook in JupyterLab would replace its saved outputs."""


def notebook_config(saved_profile: str = SAVED_PROFILE, **overrides) -> Config:
    """The config of a notebook's first cell: ``config_from_env(**overrides)``, guarded.

    In JupyterLab (``JPY_SESSION_NAME`` names the notebook), a course notebook
    (``NN_name.ipynb``) whose profile would be chosen implicitly and differs from
    ``saved_profile`` raises ``ProfileMismatchError`` before any output is replaced.
    ``RESVAE_PROFILE`` set, a renamed copy, nbconvert, nbval and scripts run unguarded.
    """
    import re

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
