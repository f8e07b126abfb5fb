"""The generalized-OOD chapter's miniature: a classifier trained on seven Fashion-MNIST garments, sixteen post-hoc
detectors scored on held-out garments (near-OOD), other image sources (far-OOD) and corrupted garments (covariate
shift), and a toy vision-language tower for MCM / GL-MCM on real sentence-encoder embeddings.

Detector hyperparameters are the methods' published defaults, fixed before any OOD data is seen (no tuning on the
test OOD sets; TempScale's temperature is fitted on held-out ID validation images, as OpenOOD does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from replbook import ood
from replbook.cache import train_or_load
from replbook.data.images import FASHION_MNIST_CLASSES, load_fashion_mnist
from replbook.data.ood_images import corrupt, far_ood
from replbook.experiments.oodv2.common import (
    Examples,
    Oodv2Results,
    Scoring,
    SeedResult,
    group_replicates,
    metric_rows,
    model_outputs,
    score_all,
)
from replbook.models import SmallCNN
from replbook.models.toy_clip import ToyImageTower, contrastive_logits
from replbook.profiles import ParameterError
from replbook.progress import progress

CORRUPTION_SEVERITY = {"gaussian_noise": 0.2, "blur": 1.0, "low_contrast": 0.6}


@dataclass(frozen=True)
class Splits:
    """The miniature's classes, OOD sources, shifts and set sizes (the parameters of the same names)."""

    id_classes: list[int]
    near_classes: list[int]
    far_sources: list[str]
    corruptions: list[str]
    n_train: int
    n_val: int
    n_test: int
    n_ood: int


@dataclass(frozen=True)
class Training:
    """How the classifier and the toy VLM are trained (the parameters of the same names)."""

    epochs: int
    lr: float
    batch_size: int
    hidden: int
    mcm_temperature: float


def check_classes(id_classes: list[int], near_classes: list[int], vim_dim: int, hidden: int) -> None:
    overlap = set(id_classes) & set(near_classes)
    if overlap:
        raise ParameterError(f"parameters 'id_classes' and 'near_classes' share {sorted(overlap)}; a class is either "
                             f"in-distribution or near-OOD.")
    if len(set(id_classes)) < 2:
        raise ParameterError("parameter 'id_classes' needs at least two distinct classes.")
    if vim_dim >= hidden:
        raise ParameterError(f"parameter 'vim_dim' ({vim_dim}) must be below 'hidden' ({hidden}).")


def split_name(group: str, name: str) -> str:
    return f"{group}: {name}"


def build_sets(splits: Splits, data: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
    """ID train / validation / test, the near-OOD set, the far-OOD sets and the covariate-shifted ID test sets."""
    gen = torch.Generator().manual_seed(seed)
    id_map = torch.full((10,), -1, dtype=torch.long)
    id_map[torch.tensor(splits.id_classes)] = torch.arange(len(splits.id_classes))
    is_id = id_map[data["y"]] >= 0
    idx = torch.nonzero(is_id).flatten()
    idx = idx[torch.randperm(len(idx), generator=gen)]
    n_train, n_val = splits.n_train, splits.n_val
    if len(idx) < n_train + n_val:
        raise ParameterError(f"parameters 'n_train' + 'n_val' ({n_train + n_val}) exceed the {len(idx)} "
                             f"ID training images.")
    train, val = idx[:n_train], idx[n_train : n_train + n_val]
    test_id = torch.nonzero(id_map[data["yt"]] >= 0).flatten()
    test_id = test_id[torch.randperm(len(test_id), generator=gen)[: splits.n_test]]
    near = torch.nonzero(torch.isin(data["yt"], torch.tensor(splits.near_classes))).flatten()
    near = near[torch.randperm(len(near), generator=gen)[: splits.n_ood]]
    x_test = data["xt"][test_id]
    ood_sets = {split_name("near", "held-out garments"): data["xt"][near]}
    for k, source in enumerate(splits.far_sources):
        ood_sets[split_name("far", source)] = far_ood(source, splits.n_ood, seed * 100 + k)
    covariate = {split_name("covariate", kind): corrupt(x_test, kind, CORRUPTION_SEVERITY[kind], seed)
                 for kind in splits.corruptions}
    return {"x_train": data["x"][train], "y_train": id_map[data["y"][train]], "x_val": data["x"][val],
            "y_val": id_map[data["y"][val]], "x_test": x_test, "y_test": id_map[data["yt"][test_id]],
            "ood": ood_sets, "covariate": covariate}


def _train(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, training: Training, seed: int,
           desc: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=training.lr)
    model.train()
    for _ in progress(range(training.epochs), desc=desc, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), training.batch_size):
            b = order[i : i + training.batch_size]
            loss = loss_fn(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


def _hyper(training: Training, seed: int, *extra: str) -> dict[str, Any]:
    return {"seed": seed, **{k: getattr(training, k) for k in ("epochs", "lr", "batch_size", *extra)}}


def train_classifier(training: Training, num_classes: int, sets: dict[str, Any], seed: int) -> SmallCNN:
    """The ID classifier (cached by content hash: data, labels, seed, training parameters and code)."""
    torch.manual_seed(seed)
    model = SmallCNN(hidden=training.hidden, num_classes=num_classes)
    train_or_load("oodv2-classifier", model,
                  lambda: _train(model, F.cross_entropy, sets["x_train"], sets["y_train"], training, seed,
                                 f"seed {seed} classifier"),
                  data=(sets["x_train"], sets["y_train"]), hyper=_hyper(training, seed), code=(_train,))
    return model.eval()


def text_embeddings(class_names: list[str]) -> torch.Tensor:
    """Unit-norm MiniLM embeddings of "a photo of a {name}." per class (cached in memory per process)."""
    from replbook.data.text_encoder import encode_sentences

    key = tuple(class_names)
    if key not in _TEXT_CACHE:
        _TEXT_CACHE[key] = encode_sentences([f"a photo of a {n.lower()}." for n in class_names])
    return _TEXT_CACHE[key]


_TEXT_CACHE: dict[tuple[str, ...], torch.Tensor] = {}


def train_vlm(training: Training, sets: dict[str, Any], text: torch.Tensor, seed: int) -> ToyImageTower:
    """The toy image tower, trained so that images match their class prompt's embedding (text frozen)."""
    torch.manual_seed(seed)
    tower = ToyImageTower(embed_dim=text.shape[1])

    def loss_fn(emb, y):
        return F.cross_entropy(contrastive_logits(emb, text, training.mcm_temperature), y)

    train_or_load("oodv2-vlm", tower,
                  lambda: _train(tower, loss_fn, sets["x_train"], sets["y_train"], training, seed,
                                 f"seed {seed} toy VLM"),
                  data=(sets["x_train"], sets["y_train"], text), hyper=_hyper(training, seed, "mcm_temperature"),
                  code=(_train, contrastive_logits))
    return tower.eval()


@torch.no_grad()
def vlm_scores(tower: ToyImageTower, text: torch.Tensor, x_by_split: dict[str, torch.Tensor], tau: float,
               ) -> dict[str, dict[str, torch.Tensor]]:
    """MCM and GL-MCM outlier scores per split, with the ID class prompts only (zero-shot)."""
    scores: dict[str, dict[str, torch.Tensor]] = {"MCM (toy VLM)": {}, "GL-MCM (toy VLM)": {}}
    for split, x in x_by_split.items():
        g, loc = tower.global_and_local(x)
        scores["MCM (toy VLM)"][split] = ood.mcm(g, text, tau)
        scores["GL-MCM (toy VLM)"][split] = ood.glmcm(g, loc, text, tau)
    return scores


def run_seed(splits: Splits, training: Training, scoring: Scoring, data: dict[str, torch.Tensor], seed: int, *,
             vlm: bool, n_boot: int, threads: int) -> SeedResult:
    """One seed: build the sets, train (or load) the classifier, score every detector on every split; with ``vlm``,
    the toy VLM's MCM and GL-MCM too."""
    torch.set_num_threads(threads)
    sets = build_sets(splits, data, seed)
    model = train_classifier(training, len(splits.id_classes), sets, seed)
    result = SeedResult(seed)
    fit_feats, _ = model_outputs(model, sets["x_train"])
    _, val_logits = model_outputs(model, sets["x_val"])
    result.temperature = ood.fit_temperature(val_logits, sets["y_val"])
    x_by_split = {"ID": sets["x_test"], **sets["ood"], **sets["covariate"]}
    outputs = {name: model_outputs(model, x) for name, x in x_by_split.items()}
    scores = score_all(model, scoring, fit_feats, sets["y_train"], result.temperature, x_by_split, outputs)
    split_names = [s for s in x_by_split if s != "ID"]
    result.metrics = metric_rows(scores, split_names, seed)
    result.boot = group_replicates(scores, split_names, n_boot, seed)
    result.accuracy = {"clean" if split == "ID" else split: float((outputs[split][1].argmax(1) == sets["y_test"])
                                                                   .float().mean())
                       for split in ("ID", *sets["covariate"])}
    if vlm:
        names = [FASHION_MNIST_CLASSES[c] for c in splits.id_classes]
        text = text_embeddings(names)
        tower = train_vlm(training, sets, text, seed)
        vscores = vlm_scores(tower, text, x_by_split, training.mcm_temperature)
        result.metrics += metric_rows(vscores, split_names, seed)
        with torch.no_grad():
            zero_shot = contrastive_logits(tower(sets["x_test"]), text, 1.0).argmax(1)
        result.accuracy["toy VLM (zero-shot prompts)"] = float((zero_shot == sets["y_test"]).float().mean())
    return result


def example_images(splits: Splits, data: dict[str, torch.Tensor], seed: int = 0, per_split: int = 8) -> Examples:
    """The first ``per_split`` images of every split as seed ``seed`` builds them (small sets: the examples
    figure)."""
    small = replace(splits, n_train=100, n_val=50, n_test=per_split, n_ood=per_split)
    sets = build_sets(small, data, seed)
    rows = {"ID (test)": sets["x_test"], **sets["ood"], **sets["covariate"]}
    images = np.stack([x[:per_split].detach().cpu().float().numpy() for x in rows.values()])
    return Examples(list(rows), images.astype(np.float32))


def load_data() -> dict[str, torch.Tensor]:
    (x, y), (xt, yt) = load_fashion_mnist("train"), load_fashion_mnist("test")
    return {"x": x, "y": y, "xt": xt, "yt": yt}


def run_miniature(splits: Splits, training: Training, scoring: Scoring, seeds: int, *, vlm: bool, n_boot: int,
                  threads: int) -> Oodv2Results:
    """Every seed of the miniature, and the example images of seed 0."""
    data = load_data()
    results = [run_seed(splits, training, scoring, data, seed, vlm=vlm, n_boot=n_boot, threads=threads)
               for seed in progress(range(seeds), desc="seeds")]
    return Oodv2Results(results, example_images(splits, data))
