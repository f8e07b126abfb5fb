"""The generalized-OOD chapter's miniature: a classifier trained on seven Fashion-MNIST garments, sixteen post-hoc
detectors scored on held-out garments (near-OOD), other image sources (far-OOD) and corrupted garments (covariate
shift), and a toy vision-language tower for MCM / GL-MCM on real sentence-encoder embeddings.

Detector hyperparameters are the methods' published defaults, fixed before any OOD data is seen (no tuning on the
test OOD sets; TempScale's temperature is fitted on held-out ID validation images, as OpenOOD does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from replbook import ood
from replbook.cache import architecture_key, cache_key, is_cached, load_state, model_path, save_state, tensor_hash
from replbook.data.images import FASHION_MNIST_CLASSES, load_fashion_mnist
from replbook.data.ood_images import CORRUPTIONS, FAR_SOURCES, corrupt, far_ood
from replbook.models import SmallCNN
from replbook.models.toy_clip import ToyImageTower, contrastive_logits
from replbook.profiles import ChapterParams, Param, ParameterError
from replbook.progress import progress

#: Our detector names → OpenOOD v1.5's postprocessor names (``oodv2_openood_v15.csv``); Entropy has no row there.
OPENOOD_NAMES = {"MSP": "MSP", "TempScale": "TempScale", "MaxLogit": "MLS", "Energy": "EBO", "GEN": "GEN",
                 "ODIN": "ODIN", "Mahalanobis": "MDS", "RelativeMahalanobis": "RMDS", "KNN": "KNN", "ViM": "VIM",
                 "ReAct": "ReAct", "ASH": "ASH", "SCALE": "SCALE", "DICE": "DICE", "SHE": "SHE"}
DETECTORS = ("MSP", "TempScale", "MaxLogit", "Energy", "Entropy", "GEN", "ODIN", "Mahalanobis",
             "RelativeMahalanobis", "KNN", "ViM", "ReAct", "ASH", "SCALE", "DICE", "SHE")
#: The survey's grouping (and OpenOOD's): scores of the classifier's outputs vs of its features.
FAMILY = {**{d: "output" for d in ("MSP", "TempScale", "MaxLogit", "Energy", "Entropy", "GEN", "ODIN")},
          **{d: "feature" for d in ("Mahalanobis", "RelativeMahalanobis", "KNN", "ViM", "ReAct", "ASH", "SCALE",
                                     "DICE", "SHE")}}
CLIP = "openai/clip-vit-base-patch16"
CORRUPTION_SEVERITY = {"gaussian_noise": 0.2, "blur": 1.0, "low_contrast": 0.6}

PARAMS = ChapterParams(
    slug="oodv2",
    params=(
        Param("seeds", int, "Seeds (subset, initialisation, OOD sets).", 1, 20),
        Param("id_classes", list, "Fashion-MNIST classes that are in-distribution.", 0, 9, item=int),
        Param("near_classes", list, "Held-out Fashion-MNIST classes: the near-OOD set.", 0, 9, item=int),
        Param("far_sources", list, "Far-OOD image sources.", choices=FAR_SOURCES, item=str),
        Param("corruptions", list, "Covariate shifts applied to the ID test images.", choices=CORRUPTIONS, item=str),
        Param("detectors", list, "Detectors to score.", choices=DETECTORS, item=str),
        Param("n_train", int, "ID training images.", 100, 60_000),
        Param("n_val", int, "Held-out ID training images (TempScale's temperature).", 50, 10_000),
        Param("n_test", int, "ID test images.", 50, 10_000),
        Param("n_ood", int, "Images per OOD set.", 50, 10_000),
        Param("epochs", int, "Training epochs of the classifier and the toy VLM.", 1, 100),
        Param("lr", float, "Adam learning rate.", 1e-5, 1.0),
        Param("batch_size", int, "Training batch size.", 8, 4096),
        Param("hidden", int, "Width of the classifier's penultimate layer.", 8, 4096),
        Param("knn_k", int, "KNN: the k-th neighbour (Sun et al. 2022 use 50).", 1, 1000),
        Param("vim_dim", int, "ViM: dimension of the principal subspace.", 1, 4095),
        Param("react_percentile", float, "ReAct: clipping percentile of training activations.", 0.0, 99.99),
        Param("ash_percentile", float, "ASH-S: pruning percentile.", 0.0, 99.99),
        Param("scale_percentile", float, "SCALE: percentile of its scaling factor.", 0.0, 99.99),
        Param("dice_percentile", float, "DICE: weight sparsity percentile.", 0.0, 99.99),
        Param("odin_temperature", float, "ODIN: temperature.", 1e-3, 1e6),
        Param("odin_epsilon", float, "ODIN: input step size.", 0.0, 1.0),
        Param("vlm", bool, "Train the toy vision-language tower and score MCM and GL-MCM."),
        Param("mcm_temperature", float, "Temperature of the toy VLM's training and of MCM.", 1e-4, 10.0),
        Param("benchmark", str, "Paper profile: the OpenOOD v1.5 benchmark.", choices=("cifar10", "cifar100")),
        Param("clip_model", str, "Paper profile: CLIP's hub id (local cache) or folder."),
        Param("clip_temperature", float, "Paper profile: MCM's temperature on CLIP's cosines.", 1e-4, 10.0),
        Param("threads", int, "torch threads.", 1, 64),
    ),
    defaults={
        "smoke": dict(seeds=1, id_classes=[0, 1, 2, 3, 5, 7, 8], near_classes=[4, 6, 9], far_sources=list(FAR_SOURCES),
                      corruptions=list(CORRUPTIONS), detectors=list(DETECTORS), n_train=600, n_val=100, n_test=200,
                      n_ood=100, epochs=1, lr=1e-3, batch_size=64, hidden=64, knn_k=10, vim_dim=16,
                      react_percentile=90.0, ash_percentile=90.0, scale_percentile=85.0, dice_percentile=70.0,
                      odin_temperature=1000.0, odin_epsilon=0.0014, vlm=True, mcm_temperature=0.05, benchmark="cifar10",
                      clip_model=CLIP, clip_temperature=1.0, threads=2),
        "cpu": dict(seeds=3, id_classes=[0, 1, 2, 3, 5, 7, 8], near_classes=[4, 6, 9], far_sources=list(FAR_SOURCES),
                    corruptions=list(CORRUPTIONS), detectors=list(DETECTORS), n_train=10_000, n_val=1000,
                    n_test=3000, n_ood=2000, epochs=3, lr=1e-3, batch_size=128, hidden=128, knn_k=50, vim_dim=32,
                    react_percentile=90.0, ash_percentile=90.0, scale_percentile=85.0, dice_percentile=70.0,
                    odin_temperature=1000.0, odin_epsilon=0.0014, vlm=True, mcm_temperature=0.05, benchmark="cifar10",
                    clip_model=CLIP, clip_temperature=1.0, threads=2),
        # The paper profile runs run_paper: OpenOOD v1.5's three ResNet-18 checkpoints (seeds = s0..s2) on its CIFAR
        # benchmark, and CLIP's MCM / GL-MCM; n_train caps the training images the feature detectors are fitted on.
        "paper": dict(seeds=3, id_classes=[0, 1, 2, 3, 5, 7, 8], near_classes=[4, 6, 9],
                      far_sources=list(FAR_SOURCES), corruptions=list(CORRUPTIONS), detectors=list(DETECTORS),
                      n_train=40_000, n_val=2000, n_test=7000, n_ood=3000, epochs=10, lr=1e-3, batch_size=128,
                      hidden=128, knn_k=50, vim_dim=32, react_percentile=90.0, ash_percentile=90.0,
                      scale_percentile=85.0, dice_percentile=70.0, odin_temperature=1000.0, odin_epsilon=0.0014,
                      vlm=True, mcm_temperature=0.05, benchmark="cifar10", clip_model=CLIP, clip_temperature=1.0,
                      threads=16),
    },
    assets={"smoke": ["fashion-mnist", "all-minilm-l6-v2"], "cpu": ["fashion-mnist", "all-minilm-l6-v2"],
            "paper": ["openood-v15", "clip-vit-base-patch16"]},
)


@dataclass
class SeedResult:
    seed: int
    metrics: list[dict] = field(default_factory=list)  # one row per detector and split
    accuracy: dict[str, float] = field(default_factory=dict)  # clean and per corruption
    temperature: float = 1.0  # TempScale's fitted temperature


def check_classes(p: dict[str, Any]) -> None:
    overlap = set(p["id_classes"]) & set(p["near_classes"])
    if overlap:
        raise ParameterError(f"parameters 'id_classes' and 'near_classes' share {sorted(overlap)}; a class is either "
                             f"in-distribution or near-OOD.")
    if len(set(p["id_classes"])) < 2:
        raise ParameterError("parameter 'id_classes' needs at least two distinct classes.")
    if p["vim_dim"] >= p["hidden"]:
        raise ParameterError(f"parameter 'vim_dim' ({p['vim_dim']}) must be below 'hidden' ({p['hidden']}).")


def split_name(group: str, name: str) -> str:
    return f"{group}: {name}"


def build_sets(p: dict[str, Any], data: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
    """ID train / validation / test, the near-OOD set, the far-OOD sets and the covariate-shifted ID test sets."""
    gen = torch.Generator().manual_seed(seed)
    id_map = torch.full((10,), -1, dtype=torch.long)
    id_map[torch.tensor(p["id_classes"])] = torch.arange(len(p["id_classes"]))
    is_id = id_map[data["y"]] >= 0
    idx = torch.nonzero(is_id).flatten()
    idx = idx[torch.randperm(len(idx), generator=gen)]
    if len(idx) < p["n_train"] + p["n_val"]:
        raise ParameterError(f"parameters 'n_train' + 'n_val' ({p['n_train'] + p['n_val']}) exceed the {len(idx)} "
                             f"ID training images.")
    train, val = idx[: p["n_train"]], idx[p["n_train"] : p["n_train"] + p["n_val"]]
    test_id = torch.nonzero(id_map[data["yt"]] >= 0).flatten()
    test_id = test_id[torch.randperm(len(test_id), generator=gen)[: p["n_test"]]]
    near = torch.nonzero(torch.isin(data["yt"], torch.tensor(p["near_classes"]))).flatten()
    near = near[torch.randperm(len(near), generator=gen)[: p["n_ood"]]]
    x_test = data["xt"][test_id]
    ood_sets = {split_name("near", "held-out garments"): data["xt"][near]}
    for k, source in enumerate(p["far_sources"]):
        ood_sets[split_name("far", source)] = far_ood(source, p["n_ood"], seed * 100 + k)
    covariate = {split_name("covariate", kind): corrupt(x_test, kind, CORRUPTION_SEVERITY[kind], seed)
                 for kind in p["corruptions"]}
    return {"x_train": data["x"][train], "y_train": id_map[data["y"][train]], "x_val": data["x"][val],
            "y_val": id_map[data["y"][val]], "x_test": x_test, "y_test": id_map[data["yt"][test_id]],
            "ood": ood_sets, "covariate": covariate}


def _train(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, p: dict[str, Any], seed: int,
           desc: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
    model.train()
    for _ in progress(range(p["epochs"]), desc=desc, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), p["batch_size"]):
            b = order[i : i + p["batch_size"]]
            loss = loss_fn(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


def train_classifier(p: dict[str, Any], sets: dict[str, Any], seed: int) -> SmallCNN:
    """The ID classifier (cached by content hash: data, seed and training parameters)."""
    torch.manual_seed(seed)
    model = SmallCNN(hidden=p["hidden"], num_classes=len(p["id_classes"]))
    key = cache_key(kind="oodv2-classifier", data=tensor_hash(sets["x_train"]), labels=tensor_hash(sets["y_train"]),
                    seed=seed, arch=architecture_key(model),
                    **{k: p[k] for k in ("epochs", "lr", "batch_size", "hidden")}, v=1)
    path = model_path("oodv2-classifier", key)
    if is_cached(path):
        load_state(model, path)
        return model.eval()
    _train(model, F.cross_entropy, sets["x_train"], sets["y_train"], p, seed, f"seed {seed} classifier")
    save_state(model, path)
    return model


@torch.no_grad()
def _outputs(model: torch.nn.Module, x: torch.Tensor, batch: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.cat([model.features(x[i : i + batch]) for i in range(0, len(x), batch)])
    return feats, model.head(feats)


def score_all(model: torch.nn.Module, p: dict[str, Any], fit_feats: torch.Tensor, fit_labels: torch.Tensor,
              temperature: float, x_by_split: dict[str, torch.Tensor],
              outputs: dict[str, tuple[torch.Tensor, torch.Tensor]],
              ) -> dict[str, dict[str, torch.Tensor]]:
    """detector → split → outlier scores [N] (higher = more OOD). ``model`` has ``features(x)`` (penultimate
    features) and ``head`` (the linear classifier on them); the feature detectors are fitted on ``fit_feats``.
    ``outputs``: split → (features, logits) of ``x_by_split`` (:func:`_outputs`); ODIN reruns the model on the
    inputs."""
    w, b = model.head.weight.detach(), model.head.bias.detach()
    fitted = {
        "Mahalanobis": lambda: ood.Mahalanobis().fit(fit_feats, fit_labels),
        "RelativeMahalanobis": lambda: ood.RelativeMahalanobis().fit(fit_feats, fit_labels),
        "KNN": lambda: ood.KNN(k=p["knn_k"]).fit(fit_feats),
        "ViM": lambda: ood.ViM(p["vim_dim"], w, b).fit(fit_feats),
        "ReAct": lambda: ood.ReAct(w, b, p["react_percentile"]).fit(fit_feats),
        "ASH": lambda: ood.ASH(w, b, p["ash_percentile"]).fit(fit_feats),
        "SCALE": lambda: ood.SCALE(w, b, p["scale_percentile"]).fit(fit_feats),
        "DICE": lambda: ood.DICE(w, b, p["dice_percentile"]).fit(fit_feats),
        "SHE": lambda: ood.SHE(w, b).fit(fit_feats, fit_labels),
    }
    logit_fns = {"MSP": ood.msp, "TempScale": lambda f: ood.msp(f, temperature), "MaxLogit": ood.max_logit,
                 "Energy": ood.energy, "Entropy": ood.entropy, "GEN": ood.gen}
    scores: dict[str, dict[str, torch.Tensor]] = {}
    for det in p["detectors"]:
        if det in logit_fns:
            scores[det] = {s: logit_fns[det](logits) for s, (_, logits) in outputs.items()}
        elif det == "ODIN":
            scores[det] = {s: torch.cat([ood.odin(model, x[i : i + 1000], p["odin_temperature"], p["odin_epsilon"])
                                         for i in range(0, len(x), 1000)]) for s, x in x_by_split.items()}
        else:
            detector = fitted[det]()
            scores[det] = {s: detector.score(feats) for s, (feats, _) in outputs.items()}
    return scores


def _metric_rows(scores: dict[str, dict[str, torch.Tensor]], splits: list[str], seed: int) -> list[dict]:
    rows = []
    for det, by_split in scores.items():
        for split in splits:
            m = ood.ood_metrics(by_split["ID"], by_split[split], positive="ood")
            m_id = ood.ood_metrics(by_split["ID"], by_split[split], positive="id")
            rows.append({"seed": seed, "detector": det, "split": split, "group": split.split(":")[0],
                         "auroc": m["auroc"], "fpr95_ood": m["fpr95"], "fpr95_id": m_id["fpr95"],
                         "aupr_in": m["aupr_in"], "aupr_out": m["aupr_out"]})
    return rows


def text_embeddings(class_names: list[str]) -> torch.Tensor:
    """Unit-norm MiniLM embeddings of "a photo of a {name}." per class (cached in memory per process)."""
    from replbook.data.text_encoder import encode_sentences

    key = tuple(class_names)
    if key not in _TEXT_CACHE:
        _TEXT_CACHE[key] = encode_sentences([f"a photo of a {n.lower()}." for n in class_names])
    return _TEXT_CACHE[key]


_TEXT_CACHE: dict[tuple[str, ...], torch.Tensor] = {}


def train_vlm(p: dict[str, Any], sets: dict[str, Any], text: torch.Tensor, seed: int) -> ToyImageTower:
    """The toy image tower, trained so that images match their class prompt's embedding (text frozen)."""
    torch.manual_seed(seed)
    tower = ToyImageTower(embed_dim=text.shape[1])
    key = cache_key(kind="oodv2-vlm", data=tensor_hash(sets["x_train"]), labels=tensor_hash(sets["y_train"]),
                    text=tensor_hash(text), seed=seed, arch=architecture_key(tower),
                    **{k: p[k] for k in ("epochs", "lr", "batch_size", "mcm_temperature")}, v=1)
    path = model_path("oodv2-vlm", key)
    if is_cached(path):
        load_state(tower, path)
        return tower.eval()

    def loss_fn(emb, y):
        return F.cross_entropy(contrastive_logits(emb, text, p["mcm_temperature"]), y)

    _train(tower, loss_fn, sets["x_train"], sets["y_train"], p, seed, f"seed {seed} toy VLM")
    save_state(tower, path)
    return tower


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


def run_seed(p: dict[str, Any], data: dict[str, torch.Tensor], seed: int) -> SeedResult:
    check_classes(p)
    torch.set_num_threads(p["threads"])
    sets = build_sets(p, data, seed)
    model = train_classifier(p, sets, seed)
    result = SeedResult(seed)
    fit_feats, _ = _outputs(model, sets["x_train"])
    _, val_logits = _outputs(model, sets["x_val"])
    result.temperature = ood.fit_temperature(val_logits, sets["y_val"])
    x_by_split = {"ID": sets["x_test"], **sets["ood"], **sets["covariate"]}
    outputs = {name: _outputs(model, x) for name, x in x_by_split.items()}
    scores = score_all(model, p, fit_feats, sets["y_train"], result.temperature, x_by_split, outputs)
    splits = [s for s in x_by_split if s != "ID"]
    result.metrics = _metric_rows(scores, splits, seed)
    result.accuracy = {"clean" if split == "ID" else split: float((outputs[split][1].argmax(1) == sets["y_test"])
                                                                   .float().mean())
                       for split in ("ID", *sets["covariate"])}
    if p["vlm"]:
        names = [FASHION_MNIST_CLASSES[c] for c in p["id_classes"]]
        text = text_embeddings(names)
        tower = train_vlm(p, sets, text, seed)
        vscores = vlm_scores(tower, text, x_by_split, p["mcm_temperature"])
        result.metrics += _metric_rows(vscores, splits, seed)
        with torch.no_grad():
            zero_shot = contrastive_logits(tower(sets["x_test"]), text, 1.0).argmax(1)
        result.accuracy["toy VLM (zero-shot prompts)"] = float((zero_shot == sets["y_test"]).float().mean())
    return result


def run(p: dict[str, Any]) -> list[SeedResult]:
    check_classes(p)
    (x, y), (xt, yt) = load_fashion_mnist("train"), load_fashion_mnist("test")
    data = {"x": x, "y": y, "xt": xt, "yt": yt}
    return [run_seed(p, data, seed) for seed in progress(range(p["seeds"]), desc="seeds")]


def run_paper(p: dict[str, Any]) -> list[SeedResult]:
    """The paper profile: OpenOOD v1.5's checkpoints and benchmark, and CLIP (``oodv2_paper``)."""
    from replbook.experiments.oodv2_paper import run_paper as _run_paper

    return _run_paper(p)


def metrics_frame(results: list[SeedResult]) -> pd.DataFrame:
    return pd.DataFrame([row for r in results for row in r.metrics])


def summary(results: list[SeedResult], metric: str = "auroc") -> pd.DataFrame:
    """detector × split: mean over seeds of ``metric``."""
    return metrics_frame(results).pivot_table(index="detector", columns="split", values=metric, aggfunc="mean")


def mean_sd(values: np.ndarray) -> str:
    sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{100 * np.mean(values):.1f} ± {100 * sd:.1f}"
