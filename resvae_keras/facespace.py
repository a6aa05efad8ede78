"""Realism, diversity and memorization in dlib's face-recognition space, offline.

dlib's face ResNet (``dlib_face_recognition_resnet_model_v1``, 99.38 % on LFW) maps an aligned
face to 128-D, where two photos of one person lie closer than 0.6 (Euclidean). Noise and blur
land near the centre of that space, inside the real faces' k-NN balls, so precision, density
and the nearest-training median must be read beside recall, coverage and detection rate.
The models load on first use. Images are float32 in [0, 1] (uint8 accepted), square crops
(N, S, S, 3).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from pathlib import Path

import numpy as np

from resvae_keras import sample_metrics
from resvae_keras.data.images import as_float_images, to_uint8

INSTALL = ("pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0 "
           "(the pins in requirements.txt)")
MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
FACE_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"

UPSCALE = 3
"""Bicubic upscaling before dlib: the HOG detector's 80 px window misses the ~40 px faces of
a 64 px crop."""

FACE_BOX = (12.3, 21.7, 54.0, 58.7)
"""(left, top, right, bottom) px at 64 px, where the shape predictor starts: the median HOG
detection on held-out CelebA crops. The crops are aligned, so one box fits all."""

PRECISION_RECALL_K = 3  # Kynkäänniemi et al. (2019)
DENSITY_COVERAGE_K = 5  # Naeem et al. (2020)
MAX_PER_HALF = 1000
"""Cap on the images per row of ``face_space_table`` (and on its reference half)."""
MAX_TRAIN = 2000
"""Cap on the training faces described for the memorization check."""
BLUR_SIGMAS_PX = (1.0, 2.0)
"""Gaussian blurs (sigma, px) of real faces for the calibration rows."""

class FaceModelsUnavailable(ImportError):
    """dlib or the ``face_recognition_models`` files are missing."""


@functools.cache
def face_models() -> dict:
    """``{"detector", "shape_predictor", "face_resnet"}`` of dlib, loaded once; raises
    ``FaceModelsUnavailable`` (saying what to install) when missing."""
    try:
        import dlib
    except ImportError as exc:
        raise FaceModelsUnavailable(f"The face-space measures need dlib: {INSTALL}.") from exc
    # find_spec locates the package without importing it: its __init__ needs pkg_resources,
    # which recent setuptools no longer ships.
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models"
        if (path / FACE_RESNET_FILE).is_file() and (path / SHAPE_PREDICTOR_FILE).is_file():
            return dict(
                detector=dlib.get_frontal_face_detector(),
                shape_predictor=dlib.shape_predictor(str(path / SHAPE_PREDICTOR_FILE)),
                face_resnet=dlib.face_recognition_model_v1(str(path / FACE_RESNET_FILE)),
            )
    raise FaceModelsUnavailable(
        f"The face-recognition models ({SHAPE_PREDICTOR_FILE}, {FACE_RESNET_FILE}) were not "
        f"found in the {MODELS_PACKAGE} package: {INSTALL}."
    )


def unavailable_reason() -> str | None:
    """Why the face-space measures cannot run here (a sentence), or None when they can."""
    try:
        face_models()
    except FaceModelsUnavailable as exc:
        return str(exc)
    return None


def _as_faces(images, name: str = "images") -> np.ndarray:
    x = as_float_images(images, name)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"`{name}` must be square RGB face crops, shape (N, S, S, 3); "
                         f"got shape {x.shape}.")
    return x


def _upscaled(image: np.ndarray) -> np.ndarray:
    """One float image (S, S, 3) in [0, 1] as uint8 RGB of side UPSCALE x S (bicubic)."""
    import cv2

    side = image.shape[0] * UPSCALE
    return np.ascontiguousarray(
        cv2.resize(to_uint8(image), (side, side), interpolation=cv2.INTER_CUBIC))


def _progress(total: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False,
                disable=(total < 500) if progress is None else not progress)


def detection_rate(images, progress: bool | None = None) -> float:
    """Share of ``images`` where dlib's HOG frontal-face detector finds a face, upscaled
    ``UPSCALE`` times, in [0, 1] (NaN if empty). ``progress``: a bar; None: for 500 images or
    more."""
    x = _as_faces(images)
    detector = face_models()["detector"]
    found = np.zeros(len(x), dtype=bool)
    with _progress(len(x), "dlib face detection", progress) as bar:
        for i, image in enumerate(x):
            found[i] = len(detector(_upscaled(image), 0)) > 0
            bar.update(1)
    return float(found.mean()) if len(found) else float("nan")


def descriptors(images, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
    """128-D dlib face descriptors of aligned crops, float32 (N, 128), about 0.12 s per image
    on one core. No detection: the shape predictor starts from ``FACE_BOX``."""
    import dlib

    x = _as_faces(images)
    models = face_models()
    scale = x.shape[1] * UPSCALE / 64.0
    box = dlib.rectangle(*(int(round(v * scale)) for v in FACE_BOX))
    out = np.zeros((len(x), 128), dtype=np.float32)
    with _progress(len(x), "dlib face descriptors", progress) as bar:
        for start in range(0, len(x), batch_size):
            batch = [_upscaled(image) for image in x[start : start + batch_size]]
            shapes = [dlib.full_object_detections([models["shape_predictor"](image, box)])
                      for image in batch]
            vectors = models["face_resnet"].compute_face_descriptor(batch, shapes)
            out[start : start + len(batch)] = np.array([np.array(v[0]) for v in vectors])
            bar.update(len(batch))
    return out


def gaussian_blur(images, sigma_px: float) -> np.ndarray:
    """Images blurred with a Gaussian of ``sigma_px`` pixels (reflected edges), float32."""
    from scipy import ndimage

    if float(sigma_px) < 0:
        raise ValueError(f"`sigma_px` must be >= 0; got {sigma_px}.")
    x = as_float_images(images)
    blurred = ndimage.gaussian_filter(x, sigma=(0, float(sigma_px), float(sigma_px), 0),
                                      mode="reflect")
    return np.clip(blurred, 0.0, 1.0).astype(np.float32)


def uniform_noise(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` images of independent uniform noise, float32 in [0, 1], shape (n, size, size, 3)."""
    return np.random.default_rng(seed).random((int(n), size, size, 3), dtype=np.float32)


def descriptor_measures(reference, queries, train) -> dict:
    """``frechet`` (of fitted Gaussians), ``precision``, ``recall``, ``density``, ``coverage``
    of ``queries`` against ``reference`` descriptors (M, 128), and ``nn_train_median`` (median
    distance to the nearest of ``train``: far below the real faces' value means copying)."""
    reference = np.asarray(reference, np.float64)
    queries = np.asarray(queries, np.float64)
    moments = [(x.mean(axis=0), np.cov(x, rowvar=False)) for x in (reference, queries)]
    frechet = sample_metrics.frechet_distance(*moments[0], *moments[1])
    precision, recall = sample_metrics.precision_recall(reference, queries, k=PRECISION_RECALL_K)
    density, coverage = sample_metrics.density_coverage(reference, queries, k=DENSITY_COVERAGE_K)
    nearest = sample_metrics.nearest_neighbours(queries, np.asarray(train, np.float64))[1]
    return {"frechet": max(frechet, 0.0), "precision": precision, "recall": recall,
            "density": density, "coverage": coverage,
            "nn_train_median": float(np.median(nearest))}


def face_space_table(real_test, real_train, sets, seed: int = 0, *,
                     paired=("reconstructions",), max_per_half: int = MAX_PER_HALF,
                     max_train: int = MAX_TRAIN, batch_size: int = 64,
                     progress: bool | None = None) -> dict:
    """``descriptor_measures`` and ``detection_rate`` of each of ``sets`` and of the calibration
    rows ``real_test`` (the floor), ``blur_<s>px`` and ``noise``: ``{"rows": {name: {...}},
    "settings": {...}}``, JSON-ready. The shuffled ``real_test`` faces are cut in halves: the
    reference half, and the query half whose size n every row has (a ``paired`` set, one image
    per test face, gives its query-half rows; other sets their first n images)."""
    test = _as_faces(real_test, "real_test")
    if len(test) < 2 * (DENSITY_COVERAGE_K + 1):
        raise ValueError(f"`real_test` needs at least {2 * (DENSITY_COVERAGE_K + 1)} faces "
                         f"(two halves, k = {DENSITY_COVERAGE_K}); got {len(test)}.")
    reserved = {"real_test", "noise"} | {f"blur_{s:g}px" for s in BLUR_SIGMAS_PX}
    for name, images in sets.items():
        if name in reserved:
            raise ValueError(f"`sets` may not use the calibration row name {name!r}.")
        if name in paired and len(images) != len(test):
            raise ValueError(f"paired set {name!r} has {len(images)} images; it needs one per "
                             f"real_test face ({len(test)}), in the same order.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(test))
    half = min(len(test) // 2, int(max_per_half))
    ref_rows, query_rows = np.sort(order[:half]), np.sort(order[half : 2 * half])
    train_rows = np.sort(rng.choice(len(real_train), min(len(real_train), int(max_train)),
                                    replace=False))
    queries = test[query_rows]
    images = {"real_test": queries}
    images.update({f"blur_{s:g}px": gaussian_blur(queries, s) for s in BLUR_SIGMAS_PX})
    for name, given in sets.items():
        given = np.asarray(given)
        images[name] = _as_faces(given[query_rows] if name in paired else given[:half], name)
    images["noise"] = uniform_noise(half, test.shape[1], seed)

    tick = time.perf_counter()
    reference = descriptors(test[ref_rows], batch_size, progress)
    train = descriptors(np.asarray(real_train[train_rows]), batch_size, progress)
    feats = {name: descriptors(x, batch_size, progress) for name, x in images.items()}
    described = time.perf_counter() - tick
    rates = {name: detection_rate(x, progress) for name, x in images.items()}
    detected = time.perf_counter() - tick - described
    rows = {name: {"n": len(x), **descriptor_measures(reference, feats[name], train),
                   "detection_rate": rates[name]} for name, x in images.items()}
    n_images = sum(map(len, images.values()))
    n_described = n_images + len(ref_rows) + len(train_rows)
    import dlib

    return {"rows": rows, "settings": {
        "descriptor": f"{FACE_RESNET_FILE} (128-D) from {MODELS_PACKAGE}, dlib {dlib.__version__}",
        "distance": "Euclidean between descriptors; dlib calls two faces one person below 0.6",
        "reference": "a random half of the real test faces; real, blurred and paired rows come "
                     "from the other half, samples give their first n images",
        "n_reference": len(ref_rows),
        "n_train": len(train_rows),
        "precision_recall_k": PRECISION_RECALL_K,
        "density_coverage_k": DENSITY_COVERAGE_K,
        "blur_sigmas_px": list(BLUR_SIGMAS_PX),
        "upscale": UPSCALE,
        "face_box_px_at_64": list(FACE_BOX),
        "detector": "dlib HOG frontal face detector on the upscaled image, no further upsampling",
        "seed": seed,
        "timings_s_per_1000_images": {"descriptors": 1000.0 * described / n_described,
                                      "detection": 1000.0 * detected / n_images},
    }}
