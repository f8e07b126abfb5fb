"""The SMG-Learning paper's multi-site data sets (``data_manifests/smg-<dataset>.yaml``), read from local folders::

    $REPLBOOK_SMG_DATA/prostate/                 six-site prostate T2 MRI (SAML / MS-Net, Liu et al.)
        <SITE>/Case00.nii.gz                     a volume per case; SITE: RUNMC, BMC, I2CVB, UCL, BIDMC, HK
        <SITE>/Case00_segmentation.nii.gz        its mask (``_Segmentation`` too); any value > 0 is prostate
        SHA256SUMS
    $REPLBOOK_SMG_DATA/fundus/                   multi-domain fundus (Wang et al., DoFE, IEEE TMI 2020)
        Domain1..Domain4/{train,test}/ROIs/image/<name>.png     RGB optic-disc crops
        Domain1..Domain4/{train,test}/ROIs/mask/<name>.png      grey 0 cup, 128 disc rim, 255 background
        SHA256SUMS

Choices the paper does not state (so ours, each in one function):

* **prostate slices** (:func:`volume_slices`): axial slices (the last voxel axis) holding any prostate, each volume's
  intensities clipped to its 0.5–99.5 percentiles and scaled to [−1, 1];
* **prostate split** (:func:`case_split`): by patient; the cases sorted by name, the last fifth (at least one) tests;
* **fundus labels** (:func:`fundus_labels`): grey < 64 → optic cup (1), 64–191 → disc rim (2), else background; the
  set's own train/test folders are the split. The chapter's Dice averages cup and rim; published optic-disc Dice is
  over cup ∪ rim, so compare with papers only after merging the two labels;
* **size**: every slice resized to ``size`` (bilinear with antialiasing for images, nearest for labels).

**Index.** No per-file checksums are published, so each dataset folder carries ``SHA256SUMS`` (``sha256sum`` output,
paths relative to the folder), made once after preparing the data (:data:`INDEX_COMMAND`); its own sha256 goes into
the manifest. Every file is checked against the index before it is parsed (from the verified bytes), and a data file
the index does not list is an error.
"""

from __future__ import annotations

import gzip
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from replbook.assets import AssetError, AssetUnavailable, resolve
from replbook.data.cgr_npz import read_index, read_verified, resize_pair, scale_image
from replbook.progress import progress

INDEX = "SHA256SUMS"
INDEX_COMMAND = (f"cd <dataset folder> && find . -name '*.nii.gz' -o -name '*.png' | sed 's|^\\./||' | sort | "
                 f"xargs sha256sum > {INDEX}")
SITES: dict[str, tuple[str, ...]] = {
    "prostate": ("RUNMC", "BMC", "I2CVB", "UCL", "BIDMC", "HK"),
    "fundus": ("Domain1", "Domain2", "Domain3", "Domain4"),
}
STRUCTURES: dict[str, tuple[str, ...]] = {"prostate": ("prostate gland",), "fundus": ("optic cup", "optic disc rim")}
#: Image channels of each data set (T2 MRI grey, fundus RGB).
CHANNELS: dict[str, int] = {"prostate": 1, "fundus": 3}
MASK_SUFFIX = re.compile(r"_[Ss]egmentation\.nii\.gz$")


@dataclass
class SiteData:
    train_images: Tensor  # [N, C, S, S] in [−1, 1]
    train_labels: Tensor  # [N, S, S] int64
    test_images: Tensor
    test_labels: Tensor
    train_cases: list[str]
    test_cases: list[str]


def dataset_folder(dataset: str) -> tuple[Path, dict[str, str]]:
    """The dataset's folder and index, resolved (and, once its sha256 is recorded, verified) through the manifest."""
    if dataset not in SITES:
        raise ValueError(f"unknown SMG dataset {dataset!r}; the paper's are {list(SITES)}.")
    (path,) = resolve(f"smg-{dataset}").values()
    return path.parent, read_index(path, INDEX_COMMAND)


def check_site_files(folder: Path, site: str, index: dict[str, str]) -> None:
    """Every data file under ``folder/site`` is in the index, and every indexed file of the site exists."""
    on_disk = {p.relative_to(folder).as_posix() for pattern in ("*.nii.gz", "*.png")
               for p in (folder / site).rglob(pattern)}
    listed = {n for n in index if n.startswith(f"{site}/")}
    unlisted, missing = sorted(on_disk - set(index)), sorted(n for n in listed if not (folder / n).is_file())
    if unlisted:
        raise AssetError(f"{folder / INDEX} does not list {len(unlisted)} file(s) of site {site} (e.g. "
                         f"{unlisted[:3]}): the index is out of date; regenerate it: {INDEX_COMMAND}")
    if missing:
        raise AssetUnavailable(f"{folder}: {len(missing)} file(s) of {INDEX} are missing (e.g. {missing[:3]}); "
                               f"restore them or regenerate the index: {INDEX_COMMAND}")
    if not listed:
        raise AssetUnavailable(f"{folder / INDEX} lists no file of site {site!r}; the folder should hold "
                               f"{folder / site}/ (see replbook.data.smg_sites for the layout).")


# ------------------------------------------------------------------------------------------------ prostate


def prostate_cases(index: dict[str, str], site: str) -> dict[str, tuple[str, str]]:
    """{case: (volume path, mask path)} of a site from the index; a volume without a mask is an error."""
    masks = {MASK_SUFFIX.sub("", n.split("/")[-1]): n for n in index
             if n.startswith(f"{site}/") and MASK_SUFFIX.search(n)}
    volumes = {n.split("/")[-1].removesuffix(".nii.gz"): n for n in index
               if n.startswith(f"{site}/") and n.endswith(".nii.gz") and not MASK_SUFFIX.search(n)}
    lonely = sorted(set(volumes) ^ set(masks))
    if lonely:
        raise AssetError(f"prostate site {site}: cases {lonely[:3]} have a volume without a mask or a mask without a "
                         f"volume (expected Case00.nii.gz beside Case00_segmentation.nii.gz).")
    return {case: (volumes[case], masks[case]) for case in sorted(volumes)}


def case_split(cases: list[str], test_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """Sorted cases; the last ``ceil(test_fraction · n)`` (at least one, and at least one left to train) test."""
    cases = sorted(cases)
    if len(cases) < 2:
        raise AssetError(f"a site needs at least two cases (one to train, one to test); got {cases}.")
    n_test = min(len(cases) - 1, max(1, math.ceil(test_fraction * len(cases))))
    return cases[:-n_test], cases[-n_test:]


def read_nifti(data: bytes, name: str) -> np.ndarray:
    """A NIfTI volume's voxel array from its (verified) bytes, gzipped or not."""
    import nibabel as nib

    try:
        raw = gzip.decompress(data) if name.endswith(".gz") else data
        return np.asarray(nib.Nifti1Image.from_bytes(raw).get_fdata(dtype=np.float32))
    except Exception as e:  # nibabel raises several types for a damaged file
        raise AssetError(f"{name} is not a readable NIfTI volume ({e}); re-export it.") from None


def volume_slices(volume: np.ndarray, mask: np.ndarray, name: str) -> tuple[Tensor, Tensor]:
    """Axial slices (last axis) holding prostate: images [N, 1, H, W] in [−1, 1] (the volume clipped to its 0.5–99.5
    percentiles), labels [N, H, W] (1 where the mask is > 0)."""
    if volume.ndim == 4 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3 or volume.shape != mask.shape[:3]:
        raise AssetError(f"{name}: volume {volume.shape} and mask {mask.shape} must be 3D on the same grid.")
    mask = mask.reshape(volume.shape)
    lo, hi = np.percentile(volume, [0.5, 99.5])
    scaled = (np.clip(volume, lo, hi) - lo) / max(hi - lo, 1e-12) * 2 - 1
    keep = np.flatnonzero((mask > 0).any(axis=(0, 1)))
    images = torch.from_numpy(np.ascontiguousarray(np.moveaxis(scaled[..., keep], -1, 0)[:, None])).float()
    labels = torch.from_numpy(np.ascontiguousarray(np.moveaxis(mask[..., keep] > 0, -1, 0))).long()
    return images, labels


def _resized(images: Tensor, labels: Tensor, size: int) -> tuple[Tensor, Tensor]:
    out = [resize_pair(i, lab, size) for i, lab in zip(images, labels, strict=True)]
    if not out:
        return images.new_zeros(0, images.shape[1], size, size), labels.new_zeros(0, size, size)
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def load_prostate_cases(folder: Path, index: dict[str, str], site: str, cases: dict[str, tuple[str, str]],
                        names: list[str], size: int) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for case in progress(names, desc=f"prostate {site}", leave=False):
        vol_name, mask_name = cases[case]
        volume = read_nifti(read_verified(folder, vol_name, index[vol_name], INDEX_COMMAND), vol_name)
        mask = read_nifti(read_verified(folder, mask_name, index[mask_name], INDEX_COMMAND), mask_name)
        x, y = volume_slices(volume, mask, vol_name)
        x, y = _resized(x, y, size)
        images.append(x)
        labels.append(y)
    return torch.cat(images), torch.cat(labels)


# ------------------------------------------------------------------------------------------------ fundus


def fundus_labels(mask: np.ndarray) -> np.ndarray:
    """The DoFE mask's grey levels → labels: < 64 optic cup (1), 64–191 disc rim (2), ≥ 192 background (0)."""
    grey = mask if mask.ndim == 2 else mask[..., :3].mean(-1)
    return np.where(grey < 64, 1, np.where(grey < 192, 2, 0)).astype(np.int64)


def read_png(data: bytes, name: str, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert(mode))
    except Exception as e:
        raise AssetError(f"{name} is not a readable image ({e}).") from None


def load_fundus_split(folder: Path, index: dict[str, str], site: str, split: str, size: int) -> tuple[Tensor, Tensor,
                                                                                                        list[str]]:
    prefix = f"{site}/{split}/ROIs/"
    images = {n.removeprefix(prefix + "image/"): n for n in index if n.startswith(prefix + "image/")}
    masks = {n.removeprefix(prefix + "mask/"): n for n in index if n.startswith(prefix + "mask/")}
    lonely = sorted(set(images) ^ set(masks))
    if lonely:
        raise AssetError(f"fundus {site}/{split}: {lonely[:3]} have an image without a mask or a mask without an "
                         f"image (ROIs/image/<name>.png beside ROIs/mask/<name>.png).")
    if not images:
        raise AssetUnavailable(f"fundus {site}: no {prefix}image/*.png in {folder / INDEX}.")
    xs, ys = [], []
    for name in progress(sorted(images), desc=f"fundus {site} {split}", leave=False):
        rgb = read_png(read_verified(folder, images[name], index[images[name]], INDEX_COMMAND), images[name], "RGB")
        grey = read_png(read_verified(folder, masks[name], index[masks[name]], INDEX_COMMAND), masks[name], "L")
        if rgb.shape[:2] != grey.shape:
            raise AssetError(f"{images[name]} is {rgb.shape[:2]} but its mask is {grey.shape}.")
        x = scale_image(torch.from_numpy(np.moveaxis(rgb, -1, 0).astype(np.float32)))
        x, y = resize_pair(x, torch.from_numpy(fundus_labels(grey)), size)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys), sorted(images)


# ------------------------------------------------------------------------------------------------ one site


def load_site(dataset: str, site: str, size: int, folder: Path | None = None,
              index: dict[str, str] | None = None) -> SiteData:
    """A site of ``dataset`` at ``size`` × ``size``: index checked, split made, every file verified."""
    if folder is None or index is None:
        folder, index = dataset_folder(dataset)
    if site not in SITES[dataset]:
        raise ValueError(f"{site!r} is not a site of {dataset}; its sites are {list(SITES[dataset])}.")
    check_site_files(folder, site, index)
    if dataset == "prostate":
        cases = prostate_cases(index, site)
        train, test = case_split(list(cases))
        tr = load_prostate_cases(folder, index, site, cases, train, size)
        te = load_prostate_cases(folder, index, site, cases, test, size)
        return SiteData(*tr, *te, train, test)
    x_tr, y_tr, train = load_fundus_split(folder, index, site, "train", size)
    x_te, y_te, test = load_fundus_split(folder, index, site, "test", size)
    return SiteData(x_tr, y_tr, x_te, y_te, train, test)
