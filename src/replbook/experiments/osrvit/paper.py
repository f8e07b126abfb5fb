"""The OSR-ViT chapter's ``paper`` profile: the VOC→COCO open-set benchmark and DINOv2, through the same protocol as
the miniature (:mod:`.common`).

**Data.** Training: PASCAL VOC 2007 + 2012 ``trainval`` (the 20 VOC classes are the known ones; ``difficult``
objects left out). Test: COCO 2017 ``val``, where the 20 classes that VOC shares are known and the other 60 unknown
(the class map of the first author's ``voccoco.py`` config [code]). Two manifests name the folders:

* ``voc0712`` (``REPLBOOK_VOC``): a ``VOCdevkit`` folder with ``VOC2007/`` and ``VOC2012/`` (``Annotations/``,
  ``ImageSets/Main/trainval.txt``, ``JPEGImages/``) and our ``SHA256SUMS`` index of every file used;
* ``coco2017-val`` (``REPLBOOK_COCO``): a folder with ``val2017/`` and ``annotations/instances_val2017.json``, and its
  ``SHA256SUMS``.

Every file is checked against its index before it is parsed or decoded. Images are resized (squashed) to
``image_size`` × ``image_size`` and read lazily, one batch at a time.

**Models.** THPN and the baseline are the dense detectors of the miniature at ``det_width`` channels on RGB input
(not mmdet's ResNet-50-FPN, which needs a CUDA build of mmcv). The classifier's backbone is ``transformers``'
``Dinov2Model`` (safetensors only) from the folder the manifest ``dinov2`` names (``REPLBOOK_DINOV2_SMALL`` /
``_BASE``) or from a folder given instead; never the network. It embeds the crops at their own size
(``crop_size``, a multiple of its 14-pixel patch), interpolating its position embeddings.

**Evaluation.** COCO's crowd regions (``iscrowd``) are kept beside the objects and ignored as COCOeval ignores them:
a detection a crowd of its class covers is neither a hit nor a false positive (:func:`replbook.osr.crowd_ignored`;
``tests/test_osr.py`` checks AP@0.5 and AP@[.5:.95] against pycocotools' COCOeval with crowds). They count in no
recall.

**Not done here:** every training step re-reads and decodes its images (a decoded cache would speed a GPU run up).
"""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from replbook import osr
from replbook.assets import AssetError, resolve
from replbook.data.cgr_npz import read_index, read_verified
from replbook.experiments.osrvit.common import (
    DETECTORS,
    DetectionSplit,
    DetectorSetup,
    OsrvitResults,
    Protocol,
    Schedule,
    Splits,
    run_seed,
    train_dense,
)
from replbook.models.vit_encoder import ImageEncoder
from replbook.profiles import ParameterError, resolve_device
from replbook.progress import progress

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
#: COCO's names of the VOC classes, in VOC's order (the rest of COCO's 80 are the unknown classes).
VOC_TO_COCO = ("airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining table",
               "dog", "horse", "motorcycle", "person", "potted plant", "sheep", "couch", "train", "tv")
DINOV2_MANIFESTS = ("dinov2-small", "dinov2-base")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
VOC_INDEX = ("cd $REPLBOOK_VOC && find VOC2007 VOC2012 -type f \\( -name '*.jpg' -o -name '*.xml' -o -name "
             "trainval.txt \\) | sort | xargs sha256sum > SHA256SUMS")
COCO_INDEX = ("cd $REPLBOOK_COCO && find val2017 annotations/instances_val2017.json -type f | sort | xargs sha256sum "
              "> SHA256SUMS")


class VerifiedImages:
    """Lazy images: ``self[i]`` → [3, size, size] float32 in [0, 1], the file checked against its index first."""

    def __init__(self, folder: Path, names: list[str], index: dict[str, str], size: int, command: str):
        self.folder, self.names, self.index, self.size, self.command = folder, names, index, size, command

    def __len__(self) -> int:
        return len(self.names)

    @property
    def digests(self) -> list[str]:
        """The images' sha256 from the index (the cache keys: content, not names)."""
        return [self.index[n] for n in self.names]

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        data = read_verified(self.folder, self.names[i], self.index[self.names[i]], self.command)
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB").resize((self.size, self.size), Image.BILINEAR))
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0


def _listed(index: dict[str, str], name: str, command: str, folder: Path) -> str:
    if name not in index:
        raise AssetError(f"{folder / 'SHA256SUMS'} does not list {name}; add the file and regenerate the index: "
                         f"{command}")
    return name


def load_voc(size: int) -> DetectionSplit:
    """VOC 2007 + 2012 ``trainval``: boxes scaled to ``size`` × ``size``, labels 0 … 19 in :data:`VOC_CLASSES`'s
    order, ``difficult`` objects left out."""
    (index_file,) = resolve("voc0712").values()
    folder, index = index_file.parent, read_index(index_file, VOC_INDEX)
    names, truths = [], []
    for year in ("VOC2007", "VOC2012"):
        ids_name = f"{year}/ImageSets/Main/trainval.txt"
        if ids_name not in index:
            continue
        ids = read_verified(folder, ids_name, index[ids_name], VOC_INDEX).decode().split()
        for image_id in ids:
            xml = read_verified(folder, _listed(index, f"{year}/Annotations/{image_id}.xml", VOC_INDEX, folder),
                                index[f"{year}/Annotations/{image_id}.xml"], VOC_INDEX)
            root = ET.fromstring(xml)
            w, h = float(root.findtext("size/width")), float(root.findtext("size/height"))
            boxes, labels = [], []
            for obj in root.iter("object"):
                if obj.findtext("difficult", "0").strip() == "1":
                    continue
                name = obj.findtext("name").strip()
                if name not in VOC_CLASSES:
                    raise AssetError(f"{folder}/{year}/Annotations/{image_id}.xml: unknown VOC class {name!r}.")
                bb = obj.find("bndbox")
                # VOC's corners are 1-based and inclusive
                x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                boxes.append([(x1 - 1) * size / w, (y1 - 1) * size / h, x2 * size / w, y2 * size / h])
                labels.append(VOC_CLASSES.index(name))
            names.append(_listed(index, f"{year}/JPEGImages/{image_id}.jpg", VOC_INDEX, folder))
            truths.append(osr.ImageTruth(np.array(boxes, float).reshape(-1, 4), np.array(labels, np.int64)))
    if not names:
        raise AssetError(f"{index_file} lists no VOC2007 or VOC2012 trainval.txt; regenerate it: {VOC_INDEX}")
    return DetectionSplit(VerifiedImages(folder, names, index, size, VOC_INDEX), truths)


def load_coco_val(size: int, limit: int) -> DetectionSplit:
    """The first ``limit`` COCO 2017 val images (by id) with any annotation: the 20 VOC classes labelled 0 … 19,
    the other 60 classes 20 … 79 (unknown); crowd regions kept apart as the truths' ``crowd_boxes``, which the
    evaluation ignores (COCOeval's rule)."""
    (index_file,) = resolve("coco2017-val").values()
    folder, index = index_file.parent, read_index(index_file, COCO_INDEX)
    ann_name = _listed(index, "annotations/instances_val2017.json", COCO_INDEX, folder)
    coco = json.loads(read_verified(folder, ann_name, index[ann_name], COCO_INDEX))
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    missing = [n for n in VOC_TO_COCO if n not in cats.values()]
    if missing:
        raise AssetError(f"{folder / ann_name}: categories {missing} are missing; is it COCO's instances file?")
    unknown = sorted(n for n in cats.values() if n not in VOC_TO_COCO)
    label_of = {cid: (VOC_TO_COCO.index(n) if n in VOC_TO_COCO else len(VOC_TO_COCO) + unknown.index(n))
                for cid, n in cats.items()}
    per_image: dict[int, list[dict]] = {}
    crowds: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        (crowds if a.get("iscrowd", 0) else per_image).setdefault(a["image_id"], []).append(a)
    images = {im["id"]: im for im in coco["images"]}
    names, truths = [], []

    def scaled(anns: list[dict], sx: float, sy: float) -> tuple[np.ndarray, np.ndarray]:
        boxes = [[a["bbox"][0] * sx, a["bbox"][1] * sy, (a["bbox"][0] + a["bbox"][2]) * sx,
                  (a["bbox"][1] + a["bbox"][3]) * sy] for a in anns]
        return (np.array(boxes, float).reshape(-1, 4),
                np.array([label_of[a["category_id"]] for a in anns], np.int64))

    for image_id in sorted(per_image)[:limit]:
        im = images[image_id]
        sx, sy = size / im["width"], size / im["height"]
        names.append(_listed(index, f"val2017/{im['file_name']}", COCO_INDEX, folder))
        truths.append(osr.ImageTruth(*scaled(per_image[image_id], sx, sy), *scaled(crowds.get(image_id, []), sx, sy)))
    return DetectionSplit(VerifiedImages(folder, names, index, size, COCO_INDEX), truths)


def load_dinov2(name: str, random_init: bool = False) -> ImageEncoder:
    """DINOv2 (``Dinov2Model``) from one of :data:`DINOV2_MANIFESTS` (the local folder its manifest names, never
    downloaded) or a folder; ``random_init`` keeps its configuration with fresh weights (the control)."""
    from transformers import Dinov2Config, Dinov2Model

    if name in DINOV2_MANIFESTS:
        folder = str(next(iter(resolve(name).values())).parent)
    elif os.path.isdir(name):
        folder = name
    else:
        raise AssetError(f"parameter 'dinov2': {name!r} is neither a folder nor one of {list(DINOV2_MANIFESTS)}; "
                         f"give a folder with a saved Dinov2Model (config.json, model.safetensors) or a manifest.")
    if random_init:
        torch.manual_seed(0)
        model = Dinov2Model(Dinov2Config.from_pretrained(folder, local_files_only=True))
    else:
        model = Dinov2Model.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    return ImageEncoder(model.eval(), IMAGENET_MEAN, IMAGENET_STD)


@dataclass(frozen=True)
class PaperData:
    """The paper profile's data and backbone: the image side, how many VOC training (a cap) and validation images
    and COCO test images, DINOv2 (a manifest or a folder) and the device."""

    image_size: int
    n_train: int
    n_val: int
    n_test: int
    dinov2: str
    device: str


def run_paper(schedule: Schedule, data: PaperData, detector: DetectorSetup, protocol: Protocol) -> OsrvitResults:
    """VOC→COCO: VOC trainval (the last ``n_val`` of a fixed shuffle held out for τ_ood), COCO val as the test, the
    dense detectors trained on each fraction, DINOv2 as the classifier's backbone."""
    torch.set_num_threads(schedule.threads)
    device = resolve_device(data.device)
    voc = load_voc(data.image_size)
    order = np.random.default_rng(0).permutation(len(voc))
    n_val = min(data.n_val, len(voc) - 1)
    train = voc.subset(np.sort(order[n_val:][:data.n_train]))
    splits = Splits(train, voc.subset(np.sort(order[:n_val])), load_coco_val(data.image_size, data.n_test),
                    len(VOC_CLASSES))
    encoders = {"osrvit": load_dinov2(data.dinov2).to(device)}
    patch = encoders["osrvit"].backbone.config.patch_size
    if protocol.crop_size % patch:
        raise ParameterError(f"parameter 'crop_size' ({protocol.crop_size}) must be a multiple of DINOv2's patch "
                             f"({patch}), e.g. 224.")
    if "osrvit-random" in protocol.arms:
        encoders["osrvit-random"] = load_dinov2(data.dinov2, random_init=True).to(device)

    def train_detectors(sub: DetectionSplit, seed: int) -> dict[str, torch.nn.Module]:
        return {name: train_dense(detector, name, sub, seed, len(VOC_CLASSES), prefix="osrvit-paper", in_channels=3,
                                  device=device, extra_hyper={"image_size": data.image_size})[0]
                for name in DETECTORS}

    runs = [run_seed(protocol, splits, encoders, f, s, train_detectors)
            for f in progress(schedule.fractions, desc="fractions") for s in range(schedule.seeds)]
    # the figure's thumbnails: at most 128 px a side, boxes divided by example_scale
    scale = max(1, data.image_size // 128)
    first = torch.nn.functional.avg_pool2d(splits.test.batch(range(protocol.n_examples)), scale)
    return OsrvitResults(runs, splits.n_known, list(VOC_CLASSES),
                         test_images=first.permute(0, 2, 3, 1).numpy().round(3).astype(np.float32),
                         test_truths=splits.test.truths[:protocol.n_examples], example_scale=scale)
