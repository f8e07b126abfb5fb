"""The LoBAM protocol both profiles run, on any :class:`~replbook.models.vit_encoder.ImageEncoder` and any set of
classification tasks with frozen heads.

One seed: every benign user fine-tunes θ_pre on their task (LoRA or full); the attacker optimises a corner trigger on
θ_pre, then trains from one LoRA initialisation and one data order a benign adapter (θ_ben) and a BadMerging adapter
(θ_mal), plus the full fine-tuning BadMerging attack as the reference; every upload (θ_ben itself, the full-FT attack,
λ · (θ_mal − θ_ben) + θ_ben over the λ sweep and at the λ the stealth rule picks on validation data) is merged with
the benign task vectors by task arithmetic and by TIES, and each merged model is scored: clean accuracy per task and
the attack success rate on the attacker's test images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from replbook import lobam
from replbook.cache import train_or_load
from replbook.codec import ResultsData
from replbook.models.vit_encoder import ImageEncoder, tiny_vit
from replbook.profiles import ParameterError, resolve_device

if TYPE_CHECKING:
    from peft import PeftModel

CLEAN, FULL_FT = "benign upload (clean merge)", "full-FT BadMerging"
NAIVE, SELECTED = "LoRA, λ = 1", "LoBAM, selected λ"
#: The control for "amplification is only a bigger update": the naive LoRA update scaled to LoBAM's ‖τ‖ at λ = 2.
SCALED, SCALED_LAM = "naive LoRA scaled to ‖τ‖ of λ = 2", 2.0
SCHEMES = ("task arithmetic", "TIES")
STEALTH_RULES = ("accuracy", "norm", "both")


#: The name of the amplified upload at λ in the results: ``LOBAM_NAME.format(lam=λ)``.
LOBAM_NAME = "LoBAM, λ = {lam:g}"


def lobam_name(lam: float) -> str:
    """The name of the amplified upload at ``lam`` in the results."""
    return LOBAM_NAME.format(lam=lam)


@dataclass
class Task:
    """One user's task: images [N, C, H, W] and labels [N] per split, ``n_classes`` classes."""

    name: str
    n_classes: int
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor


@dataclass
class Shared:
    """What every seed starts from: the encoder's architecture (``encoder_spec``, see :func:`build_encoder`), θ_pre,
    one frozen linear head per task (weight [K, D], bias [K]) and the tasks; ``attacker`` names the attacker's
    task."""

    encoder_spec: dict[str, Any]
    pretrained: dict[str, Tensor]
    heads: dict[str, tuple[Tensor, Tensor]]
    tasks: dict[str, Task]
    attacker: str


@dataclass(frozen=True)
class Protocol:
    """The protocol's settings (the parameters of the same names): fine-tuning, the attack and its trigger, the λ
    sweep and the stealth rule, merging, evaluation and the device."""

    target: int
    benign_mode: str
    epochs: int
    lr_lora: float
    lr_full: float
    lora_rank: int
    lora_targets: str
    batch_size: int
    alpha: float
    patch: int
    trigger_epochs: int
    trigger_lr: float
    lambdas: list[float]
    lam_max: float
    lam_tol: float
    stealth_rule: str
    stealth_delta: float
    stealth_kappa: float
    merge_coef: float
    ties_k: float
    ties_coef: float
    eval_batch_size: int
    device: str


@dataclass
class SeedResult:
    """One seed of the protocol: the λ the stealth rule picked, the trigger (its corner square [C, L, L] and, for
    the page, the trigger pasted on a grey image [C, H, W]), θ_pre's scores, each user's own clean accuracy, the
    benign ‖τ‖, every upload's own and merged scores, and the diagnostics (residual cosine, stealth-rule reads,
    packing error, wall time)."""

    seed: int
    lam_selected: float = float("nan")
    trigger: np.ndarray | None = None  # the optimised patch's corner square [C, L, L]
    trigger_shown: np.ndarray | None = None  # the trigger pasted on a grey image [C, H, W] (the page's figure)
    image_shape: list[int] = field(default_factory=list)  # [C, H, W] of the attacker's images
    pre: dict[str, Any] = field(default_factory=dict)  # θ_pre: clean accuracy per task, ASR
    finetuned: dict[str, float] = field(default_factory=dict)  # each benign user's own clean accuracy
    benign_norms: dict[str, float] = field(default_factory=dict)  # ‖τ_k‖ of the benign users
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # upload → λ, own accuracy, norm, merged
    residual_cosine: float = float("nan")  # cos(θ_mal − θ_ben, θ_ben − θ_pre): is the backdoor orthogonal?
    stealth: dict[str, Any] = field(default_factory=dict)  # validation accuracies the rule read, and λ = 1's outcome
    packing_error: float = float("nan")  # max |peft 'cat' adapter − amplify| on the weights, at the largest λ
    seconds: float = 0.0


@dataclass
class LobamResults(ResultsData):
    """The seeds at the main width (``main``, width ``hidden``) and at each other width (``widths``: the wider-backbone
    question; empty in the paper profile)."""

    main: list[SeedResult]
    hidden: int
    widths: dict[int, list[SeedResult]] = field(default_factory=dict)


def build_encoder(spec: dict[str, Any]) -> ImageEncoder:
    """The encoder named by ``spec``: {"kind": "tiny-vit", "hidden": …, "layers": …, "heads": …} or {"kind": "clip",
    "config": a ``CLIPVisionConfig`` dict, "mean": …, "std": …} (the weights are loaded afterwards)."""
    if spec["kind"] == "tiny-vit":
        return tiny_vit(spec["hidden"], layers=spec["layers"], heads=spec["heads"])
    if spec["kind"] == "clip":
        from transformers import CLIPVisionConfig, CLIPVisionModel

        return ImageEncoder(CLIPVisionModel(CLIPVisionConfig(**spec["config"])), spec["mean"], spec["std"])
    raise ValueError(f"unknown encoder kind {spec['kind']!r}; use 'tiny-vit' or 'clip'.")


def make_head(weight: Tensor, bias: Tensor) -> nn.Linear:
    """A frozen linear head from its weight [K, D] and bias [K]."""
    head = nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict({"weight": weight, "bias": bias})
    return head.requires_grad_(False)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def features(encoder: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """[N, D] features of images x [N, C, H, W] (on the CPU), in batches on the encoder's device."""
    encoder.eval()
    device = _device_of(encoder)
    return torch.cat([encoder(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def fit_probe(feats: Tensor, labels: Tensor, n_classes: int, steps: int = 200, weight_decay: float = 1e-3,
              ) -> tuple[Tensor, Tensor]:
    """A linear probe on frozen features [N, D] (L-BFGS on cross-entropy + weight decay): the frozen task head,
    the stand-in for CLIP's zero-shot text heads. Returns weight [K, D] and bias [K]."""
    mean, std = feats.mean(0), feats.std(0).clamp(min=1e-6)
    z = (feats - mean) / std
    head = nn.Linear(feats.shape[1], n_classes)
    nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(z), labels) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # fold the standardisation into the head: W (f − μ)/σ + b = (W/σ) f + (b − W μ/σ)
    weight = head.weight.detach() / std
    return weight, head.bias.detach() - weight @ mean


# ------------------------------------------------------------------------------------------------ fine-tuning


def lora_model(encoder: ImageEncoder, rank: int, targets: str, init_seed: int) -> PeftModel:
    """``encoder`` with LoRA adapters of rank r (α = 2r) on the layers ``targets`` names ("attention" or
    "attention+mlp"); the adapters' initialisation is drawn from ``init_seed``, so the attacker's two adapters start
    equal."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(init_seed)
    return get_peft_model(encoder, LoraConfig(r=rank, lora_alpha=2 * rank,
                                              target_modules=encoder.lora_targets[targets]))


def train_encoder(model: nn.Module, head: nn.Linear, task: Task, protocol: Protocol, order_seed: int, lr: float,
                  backdoor: dict[str, Any] | None = None) -> list[float]:
    """AdamW on the trainable parameters of ``model`` for ``protocol.epochs`` epochs of ``task``'s training images in
    the order drawn from ``order_seed``; cross-entropy through the frozen ``head``, or with ``backdoor`` (patch,
    mask, target, pre-trained encoder) BadMerging's loss with the first half of each batch triggered. Returns the
    mean loss per epoch."""
    device = _device_of(model)
    order_gen = torch.Generator().manual_seed(order_seed)
    mix_gen = torch.Generator().manual_seed(order_seed + 1)  # r ~ U(0.2, 1): apart from the data order
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(protocol.epochs):
        order, total, count = torch.randperm(len(task.x_train), generator=order_gen), 0.0, 0
        for start in range(0, len(order), protocol.batch_size):
            idx = order[start:start + protocol.batch_size]
            xb, yb = task.x_train[idx].to(device), task.y_train[idx].to(device)
            if backdoor is None:
                loss = F.cross_entropy(head(model(xb)), yb)
            else:
                x_trig = lobam.apply_trigger(xb[: max(1, len(xb) // 2)], backdoor["patch"], backdoor["mask"])
                feats = model(torch.cat([xb, x_trig]))
                with torch.no_grad():
                    pre = backdoor["pre"](x_trig)
                r = float(torch.empty(1).uniform_(0.2, 1.0, generator=mix_gen))
                loss = lobam.badmerging_loss(head(feats[: len(xb)]), yb, feats[len(xb):], pre, head,
                                             backdoor["target"], protocol.alpha, r)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        losses.append(total / count)
    model.eval()
    return losses


def _train_code() -> tuple:
    """Everything whose edit changes a fine-tune: the cache key hashes its source."""
    return (train_encoder, finetune, lora_model, build_encoder, ImageEncoder, tiny_vit, lobam.badmerging_loss,
            lobam.apply_trigger)


def finetune(shared: Shared, task: Task, protocol: Protocol, seed: int, mode: str,
             backdoor: dict[str, Any] | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Fine-tune θ_pre on ``task`` (``mode`` "lora" or "full"; BadMerging's loss when ``backdoor`` is given), cached
    by content. Returns the full encoder weights θ_k and, for LoRA, the adapter's own weights."""
    device = resolve_device(protocol.device)
    encoder = build_encoder(shared.encoder_spec)
    encoder.load_state_dict(shared.pretrained)
    encoder.to(device)
    head = make_head(*shared.heads[task.name]).to(device)
    order_seed = 1000 * seed + sorted(shared.tasks).index(task.name)
    if mode == "lora":
        model = lora_model(encoder, protocol.lora_rank, protocol.lora_targets, init_seed=order_seed)
        lr = protocol.lr_lora
    else:
        model, lr = encoder, protocol.lr_full
    hyper = {"mode": mode, "seed": seed, "order": order_seed, "lr": lr, "backdoor": backdoor is not None,
             **{k: getattr(protocol, k) for k in ("epochs", "batch_size", "alpha", "lora_rank", "lora_targets",
                                                  "target", "patch")}}
    data = (shared.pretrained, shared.heads[task.name], task.x_train, task.y_train,
            None if backdoor is None else backdoor["patch"])
    train_or_load(f"lobam-{mode}{'-backdoor' if backdoor else ''}", model,
                  lambda: train_encoder(model, head, task, protocol, order_seed, lr, backdoor),
                  data=data, hyper=hyper, code=_train_code())
    if mode == "full":
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, None
    from peft import get_peft_model_state_dict

    adapter = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {k: v.detach().cpu().clone() for k, v in model.merge_and_unload().state_dict().items()}, adapter


def packing_error(shared: Shared, rank: int, targets: str, adapters: dict[str, dict[str, Tensor]], lam: float,
                  expected: dict[str, Tensor]) -> float:
    """Rebuild the upload as one peft adapter (:func:`replbook.lobam.amplified_adapter`, rank 2r) from the two
    adapters (of rank ``rank`` on ``targets``) and return the largest absolute difference of its merged weights from
    ``expected``."""
    from peft import set_peft_model_state_dict

    encoder = build_encoder(shared.encoder_spec)
    encoder.load_state_dict(shared.pretrained)
    model = lora_model(encoder, rank, targets, init_seed=0)
    model.add_adapter("benign", model.peft_config["default"])
    model.add_adapter("malicious", model.peft_config["default"])
    set_peft_model_state_dict(model, adapters["benign"], adapter_name="benign")
    set_peft_model_state_dict(model, adapters["malicious"], adapter_name="malicious")
    lobam.amplified_adapter(model, "malicious", "benign", lam, "upload")
    model.set_adapter("upload")
    merged = model.merge_and_unload(adapter_names=["upload"]).state_dict()
    return max(float((merged[k] - expected[k]).abs().max()) for k in expected)


# ------------------------------------------------------------------------------------------------ evaluation


class Scorer:
    """Loads weights into one encoder and scores them: clean accuracy on each task's test (or validation) images
    and the attack success rate of the trigger on the attacker's test images."""

    def __init__(self, shared: Shared, protocol: Protocol, patch: Tensor, mask: Tensor, random_seed: int = 0):
        self.shared, self.protocol, self.patch, self.mask = shared, protocol, patch, mask
        # the control trigger: a random patch of the same size, never optimised (does any corner patch do it?)
        self.random_patch = torch.rand(patch.shape, generator=torch.Generator().manual_seed(10_000 + random_seed))
        self.device = resolve_device(protocol.device)
        self.encoder = build_encoder(shared.encoder_spec).eval().to(self.device)
        self.heads = {name: make_head(*h) for name, h in shared.heads.items()}

    @torch.no_grad()
    def predict(self, task: str, x: Tensor) -> Tensor:
        """Predicted classes [N] (on the CPU) of images x [N, C, H, W]."""
        return self.heads[task](features(self.encoder, x, self.protocol.eval_batch_size)).argmax(1)

    def load(self, weights: dict[str, Tensor]) -> Scorer:
        """Put ``weights`` (a full encoder state dict) into the encoder."""
        self.encoder.load_state_dict(weights)
        return self

    def accuracy(self, task: str, split: str = "test") -> float:
        """Clean accuracy on ``task``'s test or validation ("val") images."""
        t = self.shared.tasks[task]
        x, y = (t.x_test, t.y_test) if split == "test" else (t.x_val, t.y_val)
        return float((self.predict(task, x) == y).float().mean())

    def asr(self, patch: Tensor | None = None) -> float:
        """The attack success rate of ``patch`` (default: the optimised trigger) on the attacker's test images."""
        t = self.shared.tasks[self.shared.attacker]
        triggered = lobam.apply_trigger(t.x_test, self.patch if patch is None else patch, self.mask)
        return lobam.attack_success_rate(self.predict(t.name, triggered), t.y_test, self.protocol.target)

    def merged_scores(self) -> dict[str, Any]:
        """Clean accuracy per task, the ASR, and two controls: the share of the attacker's non-target clean test
        images classified as the target (``target_rate``: an ASR no higher than it is a collapsed model, not a
        backdoor) and the ASR of a random patch of the same size (``asr_random``: any corner patch?)."""
        out: dict[str, Any] = {"ca": {}}
        for name, t in self.shared.tasks.items():
            preds = self.predict(name, t.x_test)
            out["ca"][name] = float((preds == t.y_test).float().mean())
            if name == self.shared.attacker:
                out["target_rate"] = lobam.attack_success_rate(preds, t.y_test, self.protocol.target)
        out["asr"] = self.asr()
        out["asr_random"] = self.asr(self.random_patch)
        return out


def merge(scheme: str, pretrained: dict[str, Tensor], task_vectors: list[dict[str, Tensor]], protocol: Protocol,
          ) -> dict[str, Tensor]:
    """The merged weights by ``scheme`` (one of :data:`SCHEMES`) with the protocol's coefficients."""
    if scheme == "task arithmetic":
        return lobam.task_arithmetic(pretrained, task_vectors, protocol.merge_coef)
    return lobam.ties_merge(pretrained, task_vectors, k=protocol.ties_k, coef=protocol.ties_coef)


def stealth_check(scorer: Scorer, shared: Shared, protocol: Protocol, theta_mal: dict[str, Tensor],
                  theta_ben: dict[str, Tensor]) -> Callable[[float], bool]:
    """The stealth rule ``protocol.stealth_rule`` as a function of λ, from what the attacker has: its *validation*
    images (never the test images) and its own benign model. The upload's clean accuracy is within
    ``stealth_delta`` of θ_ben's ("accuracy"), and/or its ‖τ‖ is at most ``stealth_kappa`` × ‖τ_ben‖ ("norm")."""
    attacker = shared.attacker
    ben_val = scorer.load(theta_ben).accuracy(attacker, "val")
    rule = protocol.stealth_rule
    norm_cap = protocol.stealth_kappa * lobam.state_norm(lobam.task_vector(theta_ben, shared.pretrained))

    def ok(lam: float) -> bool:
        upload = lobam.amplify(theta_mal, theta_ben, lam)
        passes = True
        if rule in ("accuracy", "both"):
            passes &= scorer.load(upload).accuracy(attacker, "val") >= ben_val - protocol.stealth_delta
        if rule in ("norm", "both"):
            passes &= lobam.state_norm(lobam.task_vector(upload, shared.pretrained)) <= norm_cap
        return bool(passes)

    return ok


def run_seed(shared: Shared, protocol: Protocol, seed: int, threads: int = 1) -> SeedResult:
    """One seed of the protocol (module docstring)."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    result = SeedResult(seed)
    attacker = shared.tasks[shared.attacker]
    image_shape = tuple(attacker.x_train.shape[1:])
    mask = lobam.corner_mask(image_shape, protocol.patch)

    # the trigger, optimised on θ_pre with the attacker's head (BadMerging's step 1)
    scorer = Scorer(shared, protocol, torch.zeros(image_shape), mask, random_seed=seed).load(shared.pretrained)
    trigger_gen = torch.Generator().manual_seed(seed)
    head_on_device = make_head(*shared.heads[attacker.name]).to(scorer.device)
    patch = lobam.optimise_trigger(lambda x: head_on_device(scorer.encoder(x.to(scorer.device))).cpu(),
                                   attacker.x_train, protocol.target, mask,
                                   protocol.trigger_epochs, protocol.trigger_lr, protocol.batch_size, trigger_gen)
    scorer.patch = patch
    result.trigger = patch[:, -protocol.patch:, -protocol.patch:].detach().cpu().numpy().astype(np.float32)
    shown = lobam.apply_trigger(torch.full((1, *image_shape), 0.5), patch.detach().cpu(), mask)[0]
    result.trigger_shown = shown.numpy().astype(np.float32)
    result.image_shape = list(image_shape)
    result.pre = scorer.merged_scores()

    # the benign users
    benign_tvs = []
    for name in shared.tasks:
        if name == attacker.name:
            continue
        theta, _ = finetune(shared, shared.tasks[name], protocol, seed, protocol.benign_mode)
        result.finetuned[name] = scorer.load(theta).accuracy(name)
        benign_tvs.append(lobam.task_vector(theta, shared.pretrained))
        result.benign_norms[name] = lobam.state_norm(benign_tvs[-1])

    # the attacker: two LoRA adapters from one initialisation and data order, and the full-FT reference
    pre_encoder = build_encoder(shared.encoder_spec)
    pre_encoder.load_state_dict(shared.pretrained)
    device = resolve_device(protocol.device)
    pre_encoder.eval().requires_grad_(False).to(device)
    backdoor = {"patch": patch.to(device), "mask": mask.to(device), "target": protocol.target, "pre": pre_encoder}
    theta_ben, adapter_ben = finetune(shared, attacker, protocol, seed, "lora")
    theta_mal, adapter_mal = finetune(shared, attacker, protocol, seed, "lora", backdoor)
    theta_full, _ = finetune(shared, attacker, protocol, seed, "full", backdoor)
    result.finetuned[attacker.name] = scorer.load(theta_ben).accuracy(attacker.name)
    result.residual_cosine = lobam.cosine(lobam.task_vector(theta_mal, theta_ben),
                                          lobam.task_vector(theta_ben, shared.pretrained))

    ok = stealth_check(scorer, shared, protocol, theta_mal, theta_ben)
    result.lam_selected = lobam.select_lambda(ok, 1.0, protocol.lam_max, protocol.lam_tol)
    result.stealth = {"theta_ben_val": scorer.load(theta_ben).accuracy(attacker.name, "val"),
                      "naive_val": scorer.load(theta_mal).accuracy(attacker.name, "val"), "passes_at_1": ok(1.0)}
    # λ is None for the uploads that are not amplified LoRAs
    uploads: dict[str, tuple[float | None, dict[str, Tensor]]] = {CLEAN: (None, theta_ben),
                                                                   FULL_FT: (None, theta_full)}
    for lam in protocol.lambdas:
        uploads[NAIVE if lam == 1 else lobam_name(lam)] = (lam, lobam.amplify(theta_mal, theta_ben, lam))
    uploads[SELECTED] = (result.lam_selected, lobam.amplify(theta_mal, theta_ben, result.lam_selected))
    tau_mal = lobam.task_vector(theta_mal, shared.pretrained)
    target_norm = lobam.state_norm(lobam.task_vector(lobam.amplify(theta_mal, theta_ben, SCALED_LAM),
                                                     shared.pretrained))
    scale = target_norm / lobam.state_norm(tau_mal)
    uploads[SCALED] = (None, lobam.task_arithmetic(shared.pretrained, [tau_mal], scale))

    for name, (lam, theta) in uploads.items():
        tv = lobam.task_vector(theta, shared.pretrained)
        scorer.load(theta)
        entry = {"lam": lam, "own_ca": scorer.accuracy(attacker.name), "own_asr": scorer.asr(),
                 "norm": lobam.state_norm(tv),
                 "cos_benign": sum(lobam.cosine(tv, b) for b in benign_tvs) / max(1, len(benign_tvs)),
                 "merged": {}}
        for scheme in SCHEMES:
            entry["merged"][scheme] = scorer.load(merge(scheme, shared.pretrained, [*benign_tvs, tv], protocol)
                                                  ).merged_scores()
        result.uploads[name] = entry
    # the rank-2r adapter at the largest λ, where its benign part has the negative weight 1 − λ
    lam_max = max(protocol.lambdas)
    result.packing_error = packing_error(shared, protocol.lora_rank, protocol.lora_targets,
                                         {"benign": adapter_ben, "malicious": adapter_mal}, lam_max,
                                         lobam.amplify(theta_mal, theta_ben, lam_max))
    result.seconds = time.perf_counter() - start
    return result


def check_parameters(lambdas: list[float], attacker: str, tasks: list[str]) -> None:
    """The λ sweep and the attacker's task."""
    if len(set(lambdas)) < 2:
        raise ParameterError("parameter 'lambdas' needs at least two values: 1 (the naive attack) and an amplified "
                             "one.")
    if 1.0 not in lambdas:
        raise ParameterError("parameter 'lambdas' must include 1 (the naive LoRA attack the claims compare with).")
    if any(lam < 1 for lam in lambdas):
        raise ParameterError("parameter 'lambdas': LoBAM amplifies, so every λ must be ≥ 1.")
    if attacker not in tasks:
        raise ParameterError(f"parameter 'attacker' ({attacker!r}) must be one of 'tasks' {tasks}.")
    if len(tasks) < 2:
        raise ParameterError("parameter 'tasks' needs at least two tasks: the attacker's and a benign user's.")
