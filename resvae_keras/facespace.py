"""Realism and diversity in a face-recognition feature space (dlib), offline.

Pixels and ImageNet features judge textures; a face-recognition network judges faces. dlib's
face-descriptor ResNet (King 2009; ``dlib_face_recognition_resnet_model_v1``, 99.38 % on
LFW) maps an aligned face to a 128-D vector in which two photos of one person lie closer
than 0.6 (Euclidean) and two people usually further apart. In that space this module measures
samples against real faces:

| function | what | range |
| --- | --- | --- |
| ``detection_rate`` | share of images where dlib's HOG frontal-face detector finds one | [0, 1] |
| ``descriptors`` | the 128-D descriptor of each image (a fixed face box, no detection) | (N, 128) |
| ``descriptor_measures`` | Fréchet distance, precision/recall, density/coverage, memorization | |
| ``face_space_table`` | those numbers for several image sets, with calibration rows | dict |

Read the measures together. Noise and heavy blur land near the centre of the face space, an
"average face" that lies inside the real faces' k-NN balls: on 80 CelebA test faces uniform
noise scored precision 1.0, density 1.2 and a nearest-training distance below that of real
faces, while its recall was 0, coverage 0.2, Fréchet distance 4x the real floor and
detection rate 0. So precision, density and the nearest-training median cannot stand alone.

Everything runs offline: the HOG detector is built into dlib, and the 5-point shape
predictor and the ResNet are files shipped inside the ``face_recognition_models`` package
(pip packages ``dlib-bin`` and ``face-recognition-models``; licences in the README). They
are loaded on first use, so importing this module needs neither.

Images are float32 in [0, 1] (uint8 accepted), shape (N, S, S, 3), aligned face crops as
the cache stores them (64 x 64 in every profile).
"""

from __future__ import annotations

import importlib.util
import time
from functools import partial
from pathlib import Path

import numpy as np

from resvae_keras import sample_metrics
from resvae_keras.data.images import as_float_images, to_uint8

INSTALL = ("pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0 "
           "(the pins in requirements.txt)")
MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
FACE_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DESCRIPTOR_DIM = 128

UPSCALE = 3
"""Every image is upscaled 3x (bicubic, 64 -> 192 px) before dlib sees it. The HOG detector
scans an 80 x 80 px window, so it finds no face smaller than about 80 px; in a 64 px crop the
face box is about 40 px, 120 px after upscaling. On 965 held-out CelebA crops 2x, 3x and 4x
find 97 %, 96 % and 96 % of the faces; 3x keeps the face well above the window's size."""

FACE_BOX = (12.3, 21.7, 54.0, 58.7)
"""The face box the shape predictor starts from, (left, top, right, bottom) in pixels of a
64 px crop (scaled for other sizes): the median HOG detection on 929 of 965 held-out CelebA
crops (per-side spread 1-3 px). The crops are aligned, so one box fits all; descriptors from
it differ from those from each face's own detection by a median 0.04, against 0.7 between
two people, and samples the detector misses still get a descriptor."""

PRECISION_RECALL_K = 3
"""Neighbours for precision and recall, as Kynkäänniemi et al. (2019)."""
DENSITY_COVERAGE_K = 5
"""Neighbours for density and coverage, as Naeem et al. (2020) recommend."""
MAX_PER_HALF = 1000
"""Cap on the images per row of ``face_space_table`` (and on its reference half)."""
MAX_TRAIN = 2000
"""Cap on the training faces described for the memorization check."""
BLUR_SIGMAS_PX = (1.0, 2.0)
"""Gaussian blurs of real faces (sigma in pixels of the 64 px crop) for the calibration rows."""

_models: dict = {}


class FaceModelsUnavailable(ImportError):
    """dlib or the ``face_recognition_models`` files are missing."""


def _models_folder() -> Path:
    # find_spec locates the package without importing it: its __init__ needs pkg_resources,
    # which recent setuptools no longer ships.
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "models"
        if (path / FACE_RESNET_FILE).is_file() and (path / SHAPE_PREDICTOR_FILE).is_file():
            return path
    raise FaceModelsUnavailable(
        f"The face-recognition models ({SHAPE_PREDICTOR_FILE}, {FACE_RESNET_FILE}) were not "
        f"found in the {MODELS_PACKAGE} package: {INSTALL}."
    )


def face_models() -> dict:
    """dlib's HOG face detector, 5-point shape predictor and face ResNet, loaded once.

    Returns:
        ``{"detector", "shape_predictor", "face_resnet"}``.

    Raises:
        FaceModelsUnavailable: dlib or the model files are not installed (says what to install).
    """
    if not _models:
        try:
            import dlib
        except ImportError as exc:
            raise FaceModelsUnavailable(f"The face-space measures need dlib: {INSTALL}.") from exc
        folder = _models_folder()
        _models.update(
            detector=dlib.get_frontal_face_detector(),
            shape_predictor=dlib.shape_predictor(str(folder / SHAPE_PREDICTOR_FILE)),
            face_resnet=dlib.face_recognition_model_v1(str(folder / FACE_RESNET_FILE)),
        )
    return _models


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


def face_detections(images, progress: bool | None = None) -> np.ndarray:
    """Whether dlib's HOG frontal-face detector finds a face in each image.

    Each image is rounded to 8 bits and upscaled ``UPSCALE`` times (bicubic) first, since the
    detector finds no face under about 80 px; the detector itself is not asked to upsample.

    Args:
        images: float32 in [0, 1] (or uint8), shape (N, S, S, 3).
        progress: show a progress bar; None: only for 500 images or more.

    Returns:
        bool array (N,).
    """
    x = _as_faces(images)
    detector = face_models()["detector"]
    found = np.zeros(len(x), dtype=bool)
    with _progress(len(x), "dlib face detection", progress) as bar:
        for i, image in enumerate(x):
            found[i] = len(detector(_upscaled(image), 0)) > 0
            bar.update(1)
    return found


def detection_rate(images, progress: bool | None = None) -> float:
    """Share of ``images`` in which dlib's HOG detector finds a face, in [0, 1] (NaN if empty).

    On 965 held-out 64 px CelebA crops it is 0.96; uniform noise gives 0. Like the Haar
    cascade of ``sample_metrics.face_detection_rate`` it answers "is it a frontal face?" and says
    nothing about identity or diversity: read it beside the descriptor measures.
    """
    found = face_detections(images, progress)
    return float(found.mean()) if len(found) else float("nan")


def _face_box(side: int):
    import dlib

    scale = side * UPSCALE / 64.0
    left, top, right, bottom = (int(round(v * scale)) for v in FACE_BOX)
    return dlib.rectangle(left, top, right, bottom)


def descriptors(images, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
    """128-D dlib face descriptors of aligned face crops.

    The crops are already aligned, so no detection runs: the 5-point shape predictor places
    eyes and nose starting from the fixed ``FACE_BOX`` on the upscaled image, and the ResNet
    describes the 150 x 150 face chip cut along those points (dlib's default padding 0.25),
    ``batch_size`` images per call of dlib's batch API. Cost: about 0.12 s of one CPU core
    per image (the ResNet: 113 s per 1000 images measured); the shape predictor and the
    upscaling add about 2 ms.

    Args:
        images: float32 in [0, 1] (or uint8), shape (N, S, S, 3).
        batch_size: images per ResNet call (memory: about 0.3 MB per image).
        progress: show a progress bar; None: only for 500 images or more.

    Returns:
        float32 array (N, 128); rows have norm near 1.5 and two photos of one person are
        usually closer than 0.6 (Euclidean).
    """
    import dlib

    x = _as_faces(images)
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    models = face_models()
    box = _face_box(x.shape[1]) if len(x) else None
    out = np.zeros((len(x), DESCRIPTOR_DIM), dtype=np.float32)
    with _progress(len(x), "dlib face descriptors", progress) as bar:
        for start in range(0, len(x), int(batch_size)):
            batch = [_upscaled(image) for image in x[start : start + int(batch_size)]]
            shapes = [dlib.full_object_detections([models["shape_predictor"](image, box)])
                      for image in batch]
            vectors = models["face_resnet"].compute_face_descriptor(batch, shapes)
            out[start : start + len(batch)] = np.array([np.array(v[0]) for v in vectors])
            bar.update(len(batch))
    return out


def gaussian_blur(images, sigma_px: float) -> np.ndarray:
    """Images blurred with a Gaussian of ``sigma_px`` pixels over height and width (reflected
    edges); float32 in [0, 1], same shape as ``images`` (N, H, W, 3)."""
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


def descriptor_measures(reference, queries, train,
                        k_precision: int = PRECISION_RECALL_K,
                        k_density: int = DENSITY_COVERAGE_K) -> dict:
    """Realism, diversity and memorization of ``queries`` against ``reference`` descriptors.

    Args:
        reference: (M, 128) descriptors of real faces (the real test faces).
        queries: (N, 128) descriptors of the set judged (samples, reconstructions, ...).
        train: (T, 128) descriptors of training faces, for the memorization check.

    Returns:
        ``{"frechet"`` (``sample_metrics.frechet_distance`` of the two sets' means and covariances,
        squared descriptor units, >= 0, 0 = same Gaussian), ``"precision"``, ``"recall"``
        (``sample_metrics.precision_recall``, k = ``k_precision``, each in [0, 1]), ``"density"``
        (>= 0, ~1 = matched), ``"coverage"`` ([0, 1]) (``sample_metrics.density_coverage``,
        k = ``k_density``), ``"nn_train_median"}`` (median over queries of the distance to
        the nearest training descriptor, descriptor units: a set far below the real test
        faces' value copies training faces).
    """
    reference = np.asarray(reference, np.float64)
    queries = np.asarray(queries, np.float64)
    frechet = sample_metrics.frechet_distance(reference.mean(axis=0), np.cov(reference, rowvar=False),
                                       queries.mean(axis=0), np.cov(queries, rowvar=False))
    precision, recall = sample_metrics.precision_recall(reference, queries, k=k_precision)
    density, coverage = sample_metrics.density_coverage(reference, queries, k=k_density)
    nearest = sample_metrics.nearest_neighbours(queries, np.asarray(train, np.float64))[1]
    return {"frechet": max(frechet, 0.0), "precision": precision, "recall": recall,
            "density": density, "coverage": coverage,
            "nn_train_median": float(np.median(nearest))}


def _check_sets(test: np.ndarray, sets: dict, paired) -> None:
    """``ValueError`` unless ``face_space_table`` can make its two halves of ``test`` and every
    row of ``sets`` (no calibration row name, paired sets one image per test face)."""
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


def face_space_table(real_test, real_train, sets, seed: int = 0, *,
                     paired=("reconstructions",), max_per_half: int = MAX_PER_HALF,
                     max_train: int = MAX_TRAIN, batch_size: int = 64,
                     progress: bool | None = None) -> dict:
    """Face-space numbers of several image sets beside calibration rows, in one run.

    The real test faces are shuffled (``seed``) and cut in two halves: the reference half
    that every row is measured against, and the query half from which the real-face rows
    are made. So no row is judged against its own originals, and every row has the same
    number of images n (the query half's size): a sample set gives its first n images.
    Calibration rows, added here:

    - ``real_test``: the query half itself, the floor (two sets of real people);
    - ``blur_1px``, ``blur_2px``: the query half blurred (``gaussian_blur``, sigma 1, 2 px);
    - ``noise``: n uniform-noise images, the ceiling.

    Args:
        real_test: held-out faces, float32 in [0, 1] or uint8, shape (N, S, S, 3), N >= 12.
        real_train: training faces (a uint8 memmap is fine); ``max_train`` of them, drawn
            with ``seed``, are the memorization reference.
        sets: ``{row name: images}``, e.g. ``{"two_stage_t1": samples,
            "reconstructions": model.reconstruct(real_test)}``.
        paired: names in ``sets`` whose row i is made from ``real_test[i]`` (same length and
            order); their query-half rows are used, like the real rows.
        max_per_half: cap on each half's size (descriptor time grows with it).
        max_train: cap on the training faces described.
        batch_size, progress: as ``descriptors``.

    Returns:
        ``{"rows": {name: {"n", "frechet", "precision", "recall", "density", "coverage",
        "detection_rate", "nn_train_median"}}, "settings": {...}}`` (ranges as
        ``descriptor_measures``; ``settings`` holds the sizes, k values, the face box, the
        upscale and the measured seconds per 1000 images), JSON-ready.
    """
    test = _as_faces(real_test, "real_test")
    _check_sets(test, sets, paired)
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

    seconds = {"descriptors": 0.0, "detection": 0.0}

    def timed(kind, fn, x):
        tick = time.perf_counter()
        value = fn(x, progress=progress)
        seconds[kind] += time.perf_counter() - tick
        return value

    describe = partial(descriptors, batch_size=batch_size)
    reference = timed("descriptors", describe, test[ref_rows])
    train = timed("descriptors", describe, np.asarray(real_train[train_rows]))
    rows = {}
    for name, x in images.items():
        feats = timed("descriptors", describe, x)
        rows[name] = {"n": len(x), **descriptor_measures(reference, feats, train),
                      "detection_rate": timed("detection", detection_rate, x)}
    n_images = sum(map(len, images.values()))
    n_described = n_images + len(ref_rows) + len(train_rows)
    return {"rows": rows, "settings": _settings(len(ref_rows), len(train_rows), seed, {
        "descriptors": 1000.0 * seconds["descriptors"] / n_described,
        "detection": 1000.0 * seconds["detection"] / n_images,
    })}


def _settings(n_reference: int, n_train: int, seed: int, timings: dict) -> dict:
    import dlib

    return {
        "descriptor": f"{FACE_RESNET_FILE} (128-D) from {MODELS_PACKAGE}, dlib {dlib.__version__}",
        "distance": "Euclidean between descriptors; dlib calls two faces one person below 0.6",
        "reference": "a random half of the real test faces; real, blurred and paired rows come "
                     "from the other half, samples give their first n images",
        "n_reference": n_reference,
        "n_train": n_train,
        "precision_recall_k": PRECISION_RECALL_K,
        "density_coverage_k": DENSITY_COVERAGE_K,
        "blur_sigmas_px": list(BLUR_SIGMAS_PX),
        "upscale": UPSCALE,
        "face_box_px_at_64": list(FACE_BOX),
        "detector": "dlib HOG frontal face detector on the upscaled image, no further upsampling",
        "seed": seed,
        "timings_s_per_1000_images": timings,
    }
