"""The CGR paper's data sets (``data_manifests/cgr-<task>.yaml``) in the layout the official code reads
(jingyzhang/CGR, ``data/Datamodule.py``; spec cgr.md §1, §5.5)::

    $REPLBOOK_CGR_DATA/<Task>_dataset_npz/          <Task>: mnms, Fundus, Prostate (the official folder names)
        imagesTr/*.npz  labelsTr/*.npz              training slices and their label maps
        labelsVal/*.npz  [imagesVal/*.npz]          validation label maps (and, if present, their images)
        SHA256SUMS                                  our index: the sha256 of every npz file (see below)

The official repository ships no data-preparation script, so parts of the layout are assumptions, each handled by
one function here:

* **npz content** (:func:`npz_array`): one array per file, as ``np.savez(path, array)`` writes it (key ``arr_0``,
  which the official prompt code reads), or under ``image``/``label``/``data``. Images are [H, W] (grey),
  [1, H, W], [H, W, 1], [3, H, W] or [H, W, 3], any numeric dtype; labels are [H, W] (or with a unit channel axis)
  of integer values 0..n, local to the task (0 background). Grey slices are repeated to 3 channels (the spec's
  "3 channels").
* **pairing** (:func:`case_id`): an image and a label map belong together when their file names match, ignoring an
  nnU-Net channel suffix ``_0000`` on the image (the official code zips the sorted lists instead, which silently
  misaligns as soon as one file is missing).
* **train / test split** (:func:`split_files`): train = labelsTr with the image of the same name in imagesTr;
  test = labelsVal with its image from imagesVal when that folder exists (as the official ``DataModule`` does), else
  from imagesTr. A training pair whose image is byte-identical to a test image (same sha256) is dropped, so the two
  never share a slice whichever way the folders were filled.
* **intensities** (:func:`scale_image`): each slice min–max scaled to [−1, 1] over all its channels — the official
  diffusion pipeline's ``ScaleIntensityd(minv=-1, maxv=1)``. The official segmenter z-scores instead
  (``NormalizeIntensityd``); the protocol shares one image tensor between generator and segmenter, so both see the
  [−1, 1] scaling here.
* **size** (:func:`resize_pair`): slices are expected at 256 × 256; any other size is resized to ``size`` (bilinear
  with antialiasing for images, nearest for labels).

**Index.** The data sets are licence-gated manual downloads with no published per-file checksums and an unknown
number of slices, so each task folder carries ``SHA256SUMS`` (``sha256sum`` output; paths relative to the task
folder), made once after preparing the data::

    cd <Task>_dataset_npz && find . -name '*.npz' | sed 's|^\\./||' | sort | xargs sha256sum > SHA256SUMS

The manifest lists the index (record its sha256 there); every npz file is checked against the index before use, and
an npz file the index does not list is an error (the index is out of date).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from replbook.assets import AssetError, AssetUnavailable, ChecksumMismatch, resolve
from replbook.progress import progress

#: Structures of each task in local label order (label i + 1) — the official ``Dataset_fingerprint/*.json``.
STRUCTURES: dict[str, tuple[str, ...]] = {
    "mnms": ("left ventricle", "myocardium", "right ventricle"),
    "fundus": ("optic cup", "optic disc"),
    "prostate": ("prostate",),
}
#: Offset of each task's local labels in the global label space of the official CFP order (``utils/tasks.py``):
#: 0 background, 1 LV, 2 MYO, 3 RV | 4 optic cup, 5 optic disc | 6 prostate. Fixed whatever the order of arrival.
GLOBAL_OFFSET: dict[str, int] = {"mnms": 0, "fundus": 3, "prostate": 5}
INDEX = "SHA256SUMS"
INDEX_COMMAND = f"cd <Task>_dataset_npz && find . -name '*.npz' | sed 's|^\\./||' | sort | xargs sha256sum > {INDEX}"
FOLDERS = ("imagesTr", "labelsTr", "imagesVal", "labelsVal")
IMAGE_KEYS = ("image", "data", "arr_0")
LABEL_KEYS = ("label", "data", "arr_0")

Pair = tuple[str, str]  # (image, label) paths relative to the task folder


@dataclass
class TaskData:
    """One task's slices: images [N, 3, S, S] float32 in [−1, 1], labels [N, S, S] int64 local (0 background),
    and the (image, label) files they came from, in the same order."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    train_files: list[Pair]
    test_files: list[Pair]


# ------------------------------------------------------------------------------------------------ the index


def manifest_name(task: str) -> str:
    return f"cgr-{task}"


def index_path(task: str) -> Path:
    """The task's ``SHA256SUMS``, resolved (and, once its sha256 is recorded, verified) through its manifest."""
    if task not in STRUCTURES:
        raise ValueError(f"unknown CGR task {task!r}; the paper's tasks are {list(STRUCTURES)}.")
    (path,) = resolve(manifest_name(task)).values()
    return path


def read_index(path: Path, command: str = INDEX_COMMAND) -> dict[str, str]:
    """``sha256sum`` output → {path relative to the index's folder: sha256}; blank lines and ``#`` comments are
    skipped. ``command`` (how to regenerate the index) goes into the errors."""
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.rstrip())
        if match is None:
            raise AssetError(f"{path}, line {number}: expected '<sha256>  <relative path>' (sha256sum output), got "
                             f"{line!r}; regenerate the index: {command}")
        entries[match[2].removeprefix("./")] = match[1].lower()
    return entries


def check_index(folder: Path, index: dict[str, str]) -> None:
    """Every npz file of the four folders (:data:`FOLDERS`) is in the index, and every indexed file exists."""
    on_disk = {p.relative_to(folder).as_posix() for sub in FOLDERS for p in (folder / sub).glob("*.npz")}
    unlisted, missing = sorted(on_disk - set(index)), sorted(n for n in index if not (folder / n).is_file())
    if unlisted:
        raise AssetError(f"{folder / INDEX} does not list {len(unlisted)} npz file(s) of the folder (e.g. "
                         f"{unlisted[:3]}): the index is out of date; regenerate it: {INDEX_COMMAND}")
    if missing:
        raise AssetUnavailable(f"{folder}: {len(missing)} file(s) of {INDEX} are missing (e.g. {missing[:3]}); "
                               f"restore them or regenerate the index: {INDEX_COMMAND}")


def read_verified(folder: Path, name: str, sha256: str, command: str = INDEX_COMMAND) -> bytes:
    """The bytes of ``folder/name`` after checking them against the index's sha256."""
    data = (folder / name).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ChecksumMismatch(f"sha256 of {folder / name} is {actual}, {folder / INDEX} says {sha256}: the file was "
                               f"altered or comes from another preparation; restore it, or if the data changed on "
                               f"purpose, regenerate the index: {command}")
    return data


# ------------------------------------------------------------------------------------------------ the split


def case_id(name: str) -> str:
    """The case a file belongs to: its file name without ``.npz`` and without an nnU-Net channel suffix ``_0000``."""
    return re.sub(r"_0000$", "", Path(name).name.removesuffix(".npz"))


def _by_case(index: dict[str, str], sub: str) -> dict[str, str]:
    files = sorted(n for n in index if n.startswith(f"{sub}/"))
    out: dict[str, str] = {}
    for name in files:
        if case_id(name) in out:
            raise AssetError(f"{sub}/ holds two files of case {case_id(name)!r}: {out[case_id(name)]}, {name}.")
        out[case_id(name)] = name
    return out


def _pairs(images: dict[str, str], labels: dict[str, str], image_sub: str, label_sub: str) -> list[Pair]:
    lonely = [labels[c] for c in labels if c not in images]
    if lonely:
        raise AssetError(f"{len(lonely)} label map(s) in {label_sub}/ have no image of the same name in "
                         f"{image_sub}/ (e.g. {lonely[:3]}); images and labels are paired by file name (an image's "
                         f"'_0000' suffix ignored): rename the files so that each label has its image.")
    return [(images[c], labels[c]) for c in sorted(labels)]


def split_files(index: dict[str, str]) -> tuple[list[Pair], list[Pair]]:
    """(train pairs, test pairs) from the index's paths: train = labelsTr with imagesTr; test = labelsVal with
    imagesVal if that folder has files, else with imagesTr; training pairs whose image has the sha256 of a test image
    are dropped (no slice in both)."""
    train_images, val_images = _by_case(index, "imagesTr"), _by_case(index, "imagesVal")
    train_labels, val_labels = _by_case(index, "labelsTr"), _by_case(index, "labelsVal")
    for sub, files in (("labelsTr", train_labels), ("labelsVal", val_labels)):
        if not files:
            raise AssetError(f"the index lists no {sub}/*.npz; the layout is <Task>_dataset_npz/"
                             f"{{imagesTr,labelsTr,labelsVal}}/*.npz (imagesVal optional).")
    test_sub = "imagesVal" if val_images else "imagesTr"
    test = _pairs(val_images or train_images, val_labels, test_sub, "labelsVal")
    train = _pairs(train_images, train_labels, "imagesTr", "labelsTr")
    test_hashes = {index[image] for image, _ in test}
    return [pair for pair in train if index[pair[0]] not in test_hashes], test


# ------------------------------------------------------------------------------------------------ one file


def npz_array(data: bytes, name: str, keys: tuple[str, ...]) -> np.ndarray:
    """The one array of an npz file: its only entry, else the first of ``keys`` it has (no pickles are read)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        found = list(npz.files)
        if len(found) == 1:
            return npz[found[0]]
        for key in keys:
            if key in found:
                return npz[key]
    raise AssetError(f"{name}: npz with entries {found}; expected one array, or one named {' / '.join(keys)}.")


def image_chw(array: np.ndarray, name: str) -> np.ndarray:
    """An image [H, W], [1|3, H, W] or [H, W, 1|3] → [3, H, W] float32 (grey repeated to 3 channels)."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        pass  # channel first
    elif a.ndim == 3 and a.shape[-1] in (1, 3):
        a = np.moveaxis(a, -1, 0)
    elif a.ndim == 2:
        a = a[None]
    elif not (a.ndim == 3 and a.shape[0] in (1, 3)):
        raise AssetError(f"{name}: image of shape {a.shape}; expected [H, W], [3, H, W] or [H, W, 3] (a 2D slice).")
    if not np.isfinite(a).all():
        raise AssetError(f"{name}: the image holds NaN or infinite values.")
    return np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a


def label_map(array: np.ndarray, name: str, n_structures: int) -> np.ndarray:
    """A label map [H, W] (or [1, H, W] / [H, W, 1]) of integers 0..n_structures → [H, W] int64."""
    a = np.asarray(array)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):
        a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:-1])
    if a.ndim != 2:
        raise AssetError(f"{name}: label map of shape {a.shape}; expected [H, W].")
    labels = np.rint(a).astype(np.int64) if a.dtype.kind == "f" else a.astype(np.int64)
    if a.dtype.kind == "f" and not np.array_equal(labels, a):
        raise AssetError(f"{name}: the label map holds non-integer values; expected integer labels 0..{n_structures}.")
    bad = sorted(set(np.unique(labels).tolist()) - set(range(n_structures + 1)))
    if bad:
        raise AssetError(f"{name}: label values {bad} outside 0..{n_structures} (the task's local labels, 0 "
                         f"background); store local labels, not global ones.")
    return labels


def scale_image(image: Tensor) -> Tensor:
    """[C, H, W] → min–max over all channels to [−1, 1] (official ``ScaleIntensityd``); a constant slice → −1."""
    lo, hi = image.min(), image.max()
    return (image - lo) / (hi - lo).clamp_min(1e-12) * 2 - 1


def resize_pair(image: Tensor, labels: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """image [C, H, W], labels [H, W] → [C, size, size], [size, size]: bilinear with antialiasing for the image
    (values stay within their range), nearest for the labels; unchanged at the right size already."""
    if image.shape[-2:] == (size, size):
        return image, labels
    image = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    labels = F.interpolate(labels[None, None].float(), size=(size, size), mode="nearest-exact")[0, 0]
    return image.clamp(-1, 1), labels.long()


def load_pair(folder: Path, pair: Pair, index: dict[str, str], n_structures: int, size: int,
              ) -> tuple[Tensor, Tensor]:
    """One verified (image [3, S, S] in [−1, 1], labels [S, S] int64) slice."""
    image_name, label_name = pair
    image = image_chw(npz_array(read_verified(folder, image_name, index[image_name]), image_name, IMAGE_KEYS),
                      image_name)
    labels = label_map(npz_array(read_verified(folder, label_name, index[label_name]), label_name, LABEL_KEYS),
                       label_name, n_structures)
    if image.shape[1:] != labels.shape:
        raise AssetError(f"{image_name} is {image.shape[1]}×{image.shape[2]} but its label map {label_name} is "
                         f"{labels.shape[0]}×{labels.shape[1]}; they must cover the same pixels.")
    return resize_pair(scale_image(torch.from_numpy(image)), torch.from_numpy(labels), size)


def load_pairs(folder: Path, pairs: list[Pair], index: dict[str, str], n_structures: int, size: int,
               desc: str = "slices") -> tuple[Tensor, Tensor]:
    """Images [N, 3, S, S] and labels [N, S, S] of ``pairs``, filled in place (no second copy of the set)."""
    images, labels = torch.empty(len(pairs), 3, size, size), torch.empty(len(pairs), size, size, dtype=torch.long)
    for i, pair in enumerate(progress(pairs, desc=desc, leave=False)):
        images[i], labels[i] = load_pair(folder, pair, index, n_structures, size)
    return images, labels


# ------------------------------------------------------------------------------------------------ one task


def load_task_data(task: str, size: int) -> TaskData:
    """A paper task (``mnms``, ``fundus``, ``prostate``) from its manifest's folder: index checked, split made,
    every file verified, slices at ``size`` × ``size``."""
    path = index_path(task)
    folder, index = path.parent, read_index(path)
    check_index(folder, index)
    train, test = split_files(index)
    n = len(STRUCTURES[task])
    train_images, train_labels = load_pairs(folder, train, index, n, size, desc=f"{task}: train")
    test_images, test_labels = load_pairs(folder, test, index, n, size, desc=f"{task}: test")
    return TaskData(train_images, train_labels, test_images, test_labels, train, test)
