"""The SMG-Learning protocol both profiles run: one segmentation task whose sites (scanners, hospitals) arrive one
after another; after each stage every arm's segmenter is scored on every site, seen or not. Also the chapter's
results type (:class:`SmgResults`) and what goes into it, the Taylor check of C4 included (:func:`taylor_check`).

* The site-modulated diffusion generator (SMD, :func:`run_smd`) learns the seen sites in sequence, one learned prompt
  per site, replaying its own samples of the earlier sites ("replay_train") or learning only the new prompt
  ("prompts_only"); after each stage it draws ``n_replay`` images of every site seen so far.
* Segmenter arms (:data:`ARMS`) share a seed's first-stage model, then learn the later sites with their own method;
  replayed SMD images are labelled by the arm's own previous-stage segmenter (spec §2.3 (b), ``labels="old_model"``)
  or by the generator's mask channel (``labels="joint"``).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from replbook import continual, replay, segmentation, smg
from replbook.cache import data_hash, train_or_load
from replbook.codec import ResultsData
from replbook.models import SegUNet
from replbook.parallel import spawn_pool
from replbook.profiles import ParameterError, resolve_device
from replbook.progress import progress
from replbook.segmentation import dice_ce_loss, dice_per_image, predict

JOINT, SEQFT, EWC, LWF, MLDG = "joint training", "sequential fine-tuning", "EWC", "LwF", "MLDG (no memory)"
AUGMENT = "appearance shifts (no memory)"
BUFFER, SMD_MIX, SMD_ORIENT, SMD_ARB, SMG = ("real buffer", "SMD replay", "SMD + orientational", "SMD + arbitrary",
                                             "SMG (SMD + PGA)")
SMG_LARGE = "SMG, larger α (exploratory)"
#: Segmenter arms → what they replay of the past sites and how they train (``objective``: a :data:`smg.OBJECTIVES`
#: entry, or "joint" (one loss over all sites' real data), "plain", "ewc", "lwf", "mldg", "augment").
ARMS: dict[str, dict[str, Any]] = {
    JOINT: {"past": "real", "fraction": 1.0, "objective": "joint"},  # upper bound: every real image kept
    SEQFT: {"past": None, "objective": "plain"},                        # lower bound
    EWC: {"past": None, "objective": "ewc"},
    LWF: {"past": None, "objective": "lwf"},
    MLDG: {"past": None, "objective": "mldg"},   # arbitrary alignment between two appearance shifts of the current site
    AUGMENT: {"past": None, "objective": "augment"},  # MLDG's shifted batches without its meta-objective: the control
    BUFFER: {"past": "real", "fraction": None, "objective": "mix"},  # a tiny real buffer: privacy-violating reference
    SMD_MIX: {"past": "smd", "objective": "mix"},
    SMD_ORIENT: {"past": "smd", "objective": "orientational"},
    SMD_ARB: {"past": "smd", "objective": "arbitrary"},
    SMG: {"past": "smd", "objective": "pga"},
    # α = β = large_alpha: chosen after the spec's default showed no effect, so shown, never judged
    SMG_LARGE: {"past": "smd", "objective": "pga", "large_alpha": True},
}


@dataclass
class Site:
    """One site of the task: real training and test pairs, labels 0..n (0 background)."""

    name: str
    description: str
    train_images: Tensor  # [N, C, H, W] in [−1, 1]
    train_labels: Tensor  # [N, H, W] int64
    test_images: Tensor
    test_labels: Tensor


@dataclass
class Study:
    """The task: its structures, the sites learned in order and the sites never trained on."""

    structures: tuple[str, ...]
    seen: list[Site]
    unseen: list[Site]

    @property
    def n_labels(self) -> int:
        return len(self.structures) + 1

    @property
    def labels(self) -> list[int]:
        return list(range(self.n_labels))

    @property
    def sites(self) -> list[Site]:
        return [*self.seen, *self.unseen]

    @property
    def channels(self) -> int:
        return self.seen[0].train_images.shape[1]


@dataclass(frozen=True)
class SMDSetup:
    """The site-modulated diffusion generator: architecture, training and sampling (the parameters of the same
    names). Small and picklable: it is what a worker process receives."""

    size: int
    labels: str
    smd_update: str
    eps_skip: bool
    gen_widths: list[int]
    attention_levels: int
    gen_layers: int
    prompt_tokens: int
    prompt_dim: int
    attention_head_dim: int
    gen_lr: float
    gen_batch: int
    gen_steps: int
    diffusion_loss: str
    n_replay: int
    sample_steps: int
    sample_batch: int
    device: str

    def hyper(self) -> dict[str, Any]:
        """What a cached generator stage or replay bank depends on, besides its data, seed and lineage."""
        keys = ("size", "labels", "smd_update", "eps_skip", "gen_widths", "attention_levels", "gen_layers",
                "prompt_tokens", "prompt_dim", "attention_head_dim", "gen_lr", "gen_batch", "gen_steps",
                "diffusion_loss", "n_replay", "sample_steps", "sample_batch")
        return {key: getattr(self, key) for key in keys}


@dataclass(frozen=True)
class ArmSetup:
    """The segmenter arms: architecture, training, the arms' own methods, and the settings of the replay they train
    on (``labels``, ``n_replay``, ``sample_steps``, ``gen_steps``, ``smd_update``: part of every cached stage's
    key); the parameters of the same names."""

    size: int
    seg_widths: list[int]
    seg_batch: int
    seg_lr: float
    seg_steps: int
    alpha: float
    beta: float
    large_alpha: float
    lam_a: float
    first_order: bool
    buffer_fraction: float
    ewc_lambda: float
    lwf_lambda: float
    lwf_temperature: float
    fisher_samples: int
    labels: str
    n_replay: int
    sample_steps: int
    gen_steps: int
    smd_update: str
    device: str

    def hyper(self, keys: tuple[str, ...]) -> dict[str, Any]:
        return {key: getattr(self, key) for key in keys}


@dataclass(frozen=True)
class Schedule:
    """Which arms and seeds run, and how the work is spread over processes."""

    arms: list[str]
    seeds: int
    workers: int
    threads: int


def validate(p: dict[str, Any]) -> None:
    """Checks across parameters, before any work."""
    unknown = [a for a in p["arms"] if a not in ARMS]
    if unknown:
        raise ParameterError(f"parameter 'arms': unknown {unknown}; choose from {list(ARMS)}.")
    for need in (SEQFT, SMD_MIX, SMG):
        if need not in p["arms"]:
            raise ParameterError(f"parameter 'arms' must include {need!r}: the claims compare SMG with it.")
    if len(p["seen"]) < 2 or len(set(p["seen"])) != len(p["seen"]):
        raise ParameterError(f"parameter 'seen' needs at least two distinct sites; got {p['seen']}.")
    if set(p["seen"]) & set(p["unseen"]) or len(set(p["unseen"])) != len(p["unseen"]) or not p["unseen"]:
        raise ParameterError(f"parameter 'unseen' needs at least one site, none of them in 'seen'; got {p['unseen']} "
                             f"(seen: {p['seen']}).")
    for name in ("gen_widths", "seg_widths"):
        f = 2 ** (len(p[name]) - 1)
        if p["size"] % f:
            raise ParameterError(f"parameter 'size' ({p['size']}) must be divisible by {f} for {name}={p[name]}.")
    if not 1 <= p["attention_levels"] <= len(p["gen_widths"]):
        raise ParameterError(f"parameter 'attention_levels' must lie in 1..{len(p['gen_widths'])} (the levels of "
                             f"gen_widths).")
    if p["device"] == "cuda" and not torch.cuda.is_available():
        raise ParameterError("parameter 'device' is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'.")
    if p["workers"] > 1 and resolve_device(p["device"]).type == "cuda":
        raise ParameterError("parameter 'workers' must be 1 on a GPU (the workers would share it); set workers=1.")


# ------------------------------------------------------------------------------------------------ SMD generator


def build_smd(setup: SMDSetup, n_sites: int, channels: int) -> replay.PromptedDenoiser:
    """Site-modulated diffusion: a conditional UNet over the image (plus a mask channel with ``labels="joint"``)
    whose cross-attention context is the site's learned prompt P_s [L, D] (spec §2.3)."""
    out = channels + (1 if setup.labels == "joint" else 0)
    unet = replay.conditional_unet(setup.size, out, setup.gen_widths, layers=setup.gen_layers,
                                   attention_levels=setup.attention_levels, context_dim=setup.prompt_dim,
                                   head_dim=setup.attention_head_dim)
    prompts = replay.TaskPrompts(n_sites, setup.prompt_tokens, setup.prompt_dim, trainable=True)
    skip = replay.make_scheduler("ddpm").alphas_cumprod if setup.eps_skip else None
    return replay.PromptedDenoiser(unet, prompts, None, skip)


def _generator_input(labels_mode: str, images: Tensor, labels: Tensor, n_labels: int) -> Tensor:
    """What the generator diffuses: the image, or image and encoded mask (``labels="joint"``)."""
    if labels_mode == "joint":
        return torch.cat([images, replay.encode_mask(labels, n_labels)], 1)
    return images


def train_smd_stage(gen: replay.PromptedDenoiser, setup: SMDSetup, k: int, site: Site, n_labels: int,
                    past: dict[int, Tensor], seed: int) -> dict[str, list]:
    """Stage k of the generator on site k's real images with site id k; with ``smd_update="replay_train"`` half of
    each batch from the second stage on is the generator's own replay of sites 0..k−1 (their ids), with
    ``"prompts_only"`` the UNet stays as stage 1 left it and only the prompts learn (the new site's row: the others
    get no gradient, and Adam without weight decay leaves them). Returns the loss curve."""
    g = torch.Generator().manual_seed(seed * 1009 + k)
    device = next(gen.parameters()).device
    sched = replay.make_scheduler("ddpm")
    prompts_only = setup.smd_update == "prompts_only" and k > 0
    if prompts_only:
        opt = torch.optim.Adam(gen.prompts.parameters(), lr=setup.gen_lr)
        past = {}
    else:
        opt = torch.optim.AdamW(gen.parameters(), lr=setup.gen_lr)
    batch = setup.gen_batch
    n_real = batch if not past else batch // 2
    real = _generator_input(setup.labels, site.train_images, site.train_labels, n_labels)
    curve = []
    gen.train()
    for _ in progress(range(setup.gen_steps), desc=f"SMD stage {k + 1}", leave=False):
        idx = torch.randint(0, len(real), (n_real,), generator=g)
        xs, ids = [real[idx]], [torch.full((n_real,), k)]
        for j, imgs in past.items():
            m = max(1, (batch - n_real) // len(past))
            xs.append(imgs[torch.randint(0, len(imgs), (m,), generator=g)])
            ids.append(torch.full((m,), j))
        x0, sid = torch.cat(xs), torch.cat(ids)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(sid),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        x0, sid, t, noise = (v.to(device) for v in (x0, sid, t, noise))
        loss = replay.denoising_loss(gen, x0, t, noise, sid, scheduler=sched, loss=setup.diffusion_loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(round(loss.item(), 5))
    gen.eval()
    return {"loss": curve}


class SiteBank(nn.Module):
    """Generated images (and, with ``labels="joint"``, their mask channel) with their site ids, held as buffers so the
    cache stores and verifies them like weights; half precision."""

    def __init__(self, n: int, channels: int, size: int):
        super().__init__()
        self.register_buffer("images", torch.zeros(n, channels, size, size, dtype=torch.float16))
        self.register_buffer("ids", torch.zeros(n, dtype=torch.long))

    def site(self, j: int) -> Tensor:
        return self.images[self.ids == j].float()


@dataclass
class SMDRun:
    """The generator through the seen sites: ``banks[k]`` holds samples of sites 0..k drawn after stage k."""

    banks: list[SiteBank] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)
    model: replay.PromptedDenoiser | None = None

    def replay(self, k: int, channels: int, n_labels: int) -> dict[int, tuple[Tensor, Tensor | None]]:
        """What replays sites 0..k−1 at stage k: {site: (images [N, C, H, W], mask labels [N, H, W] or None)}."""
        if k == 0:
            return {}
        bank, out = self.banks[k - 1], {}
        for j in range(k):
            x = bank.site(j)
            out[j] = (x[:, :channels], replay.decode_mask(x[:, channels:], n_labels) if x.shape[1] > channels
                      else None)
        return out


def run_smd(setup: SMDSetup, study: Study, seed: int = 0) -> SMDRun:
    """Train SMD on seen sites 0..K−2 (the last site's generator would replay for no later stage), drawing its replay
    after each stage; every stage and bank is cached by content hash."""
    torch.manual_seed(seed)
    device = resolve_device(setup.device)
    channels, size = study.channels, setup.size
    gen = build_smd(setup, len(study.seen), channels).to(device)
    bank_channels = channels + (1 if setup.labels == "joint" else 0)
    code = (replay, sys.modules[__name__])
    run = SMDRun()
    lineage: list[str] = []
    for k in range(len(study.seen) - 1):
        site = study.seen[k]
        lineage.append(data_hash(site.train_images, site.train_labels))
        hyper = {**setup.hyper(), "seed": seed, "stage": k, "lineage": list(lineage)}
        past = {} if k == 0 else {j: run.banks[k - 1].site(j) for j in range(k)}
        curve = train_or_load("smg-smd", gen, lambda k=k, site=site, past=past: train_smd_stage(
            gen, setup, k, site, study.n_labels, past, seed), data=lineage, hyper=hyper, code=code)
        run.curves.append(curve)
        n = setup.n_replay * (k + 1)
        bank = SiteBank(n, bank_channels, size)

        def draw(bank: SiteBank = bank, k: int = k) -> dict:
            ids = torch.arange(k + 1).repeat_interleave(setup.n_replay)
            images = replay.sample_images(gen, ids, bank_channels, size, setup.sample_steps,
                                          generator=torch.Generator().manual_seed(seed * 7919 + k),
                                          batch_size=setup.sample_batch, device=device)
            bank.images.copy_(images)
            bank.ids.copy_(ids)
            return {"n": len(ids)}

        train_or_load("smg-replay", bank, draw, data=lineage, hyper=hyper, code=code)
        run.banks.append(bank)
    run.model = gen
    return run


# ------------------------------------------------------------------------------------------------ segmenter arms


def appearance_shift(images: Tensor, generator: torch.Generator) -> Tensor:
    """One random appearance change applied to a whole batch [B, C, H, W] in [−1, 1] (a simulated site for MLDG): a
    gamma in [0.5, 2] (log-uniform), contrast in [0.6, 1.4] about the batch mean, brightness in [−0.3, 0.3], Gaussian
    noise σ in [0, 0.1]."""
    gamma = float(torch.exp(torch.empty(1).uniform_(np.log(0.5), np.log(2.0), generator=generator)))
    contrast, shift, sigma = (float(torch.empty(1).uniform_(a, b, generator=generator))
                              for a, b in ((0.6, 1.4), (-0.3, 0.3), (0.0, 0.1)))
    x = ((images + 1) / 2).clamp(0, 1) ** gamma * 2 - 1
    x = (x - x.mean()) * contrast + x.mean() + shift
    x = x + sigma * torch.randn(x.shape, generator=generator).to(x.device)
    return x.clamp(-1, 1)


def _draw(images: Tensor, labels: Tensor, n: int, g: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
    """n random pairs, each flipped left–right with probability ½."""
    idx = torch.randint(0, len(images), (n,), generator=g)
    x, y = images[idx], labels[idx]
    flip = torch.rand(n, generator=g) < 0.5
    x, y = torch.where(flip[:, None, None, None], x.flip(-1), x), torch.where(flip[:, None, None], y.flip(-1), y)
    return x.to(device), y.to(device)


@dataclass
class EWCState:
    """Online EWC: the summed Fisher of the stages so far and the weights after the latest."""

    fisher: dict[str, Tensor] | None = None
    anchor: dict[str, Tensor] | None = None

    def update(self, model: nn.Module, site: Site, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(site.train_images), generator=g)[:n]
        device = next(model.parameters()).device
        new = continual.fisher_diagonal(model, site.train_images[idx].to(device), generator=g)
        self.fisher = continual.merge_fishers(self.fisher, new)
        self.anchor = {k: v.detach().clone() for k, v in model.named_parameters()}


def train_stage(model: nn.Module, setup: ArmSetup, k: int, study: Study, arm: str,
                past: dict[int, tuple[Tensor, Tensor]], previous: nn.Module | None, ewc: EWCState,
                seed: int) -> dict[str, list]:
    """Stage k of one arm: Adam with cosine annealing to 0.1·lr over ``seg_steps`` steps of ``seg_batch`` pairs. With
    replay, half of each batch is the current site and the other half is split evenly over the past sites (at least
    two pairs each); joint training gives every site an equal share."""
    objective = ARMS[arm]["objective"]
    alpha, beta = (setup.large_alpha,) * 2 if ARMS[arm].get("large_alpha") else (setup.alpha, setup.beta)
    g = torch.Generator().manual_seed(seed * 104729 + k)
    device = next(model.parameters()).device
    site, labels, batch = study.seen[k], study.labels, setup.seg_batch
    if past and objective == "joint":
        n_cur = per_site = max(2, batch // (len(past) + 1))
    elif past:
        n_cur, per_site = batch // 2, max(2, (batch - batch // 2) // len(past))
    else:
        n_cur, per_site = batch, 0
    opt = torch.optim.Adam(model.parameters(), lr=setup.seg_lr, weight_decay=3e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, setup.seg_steps, eta_min=0.1 * setup.seg_lr)

    def loss_fn(logits: Tensor, target: Tensor) -> Tensor:
        return dice_ce_loss(logits, target, labels)

    curve = []
    model.train()
    for step in range(setup.seg_steps):
        current = _draw(site.train_images, site.train_labels, n_cur, g, device)
        rep = {j: _draw(x, y, per_site, g, device) for j, (x, y) in past.items()}
        if objective in smg.OBJECTIVES:
            loss = smg.smg_step(model, opt, loss_fn, current, rep, k, objective=objective, alpha=alpha,
                                beta=beta, lam_a=setup.lam_a, first_order=setup.first_order, generator=g)["loss"]
        else:
            opt.zero_grad()
            if objective in ("mldg", "augment"):  # two simulated sites: one appearance shift per half of the batch
                half = n_cur // 2
                A = (appearance_shift(current[0][:half], g), current[1][:half])
                B = (appearance_shift(current[0][half:], g), current[1][half:])
                total = (smg.meta_term(model, loss_fn, A, B, setup.beta, first_order=setup.first_order)
                         if objective == "mldg" else loss_fn(model(A[0]), A[1]) + loss_fn(model(B[0]), B[1]))
            else:
                x = torch.cat([current[0], *(v[0] for v in rep.values())])
                y = torch.cat([current[1], *(v[1] for v in rep.values())])
                logits = model(x)
                total = loss_fn(logits, y)
                if objective == "ewc" and ewc.fisher is not None:
                    total = total + setup.ewc_lambda * continual.ewc_penalty(model, ewc.fisher, ewc.anchor)
                if objective == "lwf" and previous is not None:
                    with torch.no_grad():
                        teacher = previous(x)
                    total = total + setup.lwf_lambda * continual.distillation_loss(logits, teacher,
                                                                                  setup.lwf_temperature)
            total.backward()
            opt.step()
            loss = total.item()
        sched.step()
        if step % 25 == 0 or step == setup.seg_steps - 1:
            curve.append(round(float(loss), 4))
    model.eval()
    return {"loss": curve}


def build_segmenter(setup: ArmSetup, channels: int, n_labels: int) -> SegUNet:
    return SegUNet(channels, n_labels, tuple(setup.seg_widths)).to(resolve_device(setup.device))


def real_buffer(site: Site, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A random ``fraction`` of a past site's real training pairs, at least two."""
    n = max(2, round(fraction * len(site.train_images)))
    idx = torch.randperm(len(site.train_images), generator=torch.Generator().manual_seed(seed))[:n]
    return site.train_images[idx], site.train_labels[idx]


def past_for_arm(arm: str, buffer_fraction: float, k: int, study: Study, smd: SMDRun | None, previous: nn.Module,
                 seed: int) -> dict[int, tuple[Tensor, Tensor]]:
    """What ``arm`` replays at stage k: {past site index: (images, labels)}; the real-buffer arm keeps
    ``buffer_fraction`` of each past site's real images."""
    spec = ARMS[arm]
    if spec["past"] is None or k == 0:
        return {}
    if spec["past"] == "real":
        fraction = spec["fraction"] or buffer_fraction
        return {j: real_buffer(study.seen[j], fraction, seed * 31 + j) for j in range(k)}
    if smd is None:
        raise ValueError(f"arm {arm!r} replays SMD images but no generator run was given.")
    out = {}
    for j, (images, masks) in smd.replay(k, study.channels, study.n_labels).items():
        # the previous stage's segmenter labels the replayed images unless the generator drew their masks
        out[j] = (images, masks if masks is not None else predict(previous, images, study.labels))
    return out


def _dice_values(values: Any) -> np.ndarray:
    """Dice per image rounded to 5 decimals, saved as float32: every arm, stage, site and seed of the cpu profile
    adds up to 86,400 values, and float32 (7 significant digits) leaves every number the page shows unchanged."""
    return np.array([round(float(v), 5) for v in values], dtype=np.float32)


def evaluate(model: nn.Module, study: Study) -> dict[str, np.ndarray]:
    """Dice per test image of every site (seen or not), averaged over the task's structures."""
    out = {}
    for site in study.sites:
        pred = predict(model, site.test_images, study.labels)
        out[site.name] = _dice_values(dice_per_image(pred, site.test_labels, list(range(1, study.n_labels))))
    return out


SEG_HYPER = ("size", "seg_widths", "seg_batch", "seg_lr", "seg_steps")
ARM_HYPER = ("alpha", "beta", "large_alpha", "lam_a", "first_order", "buffer_fraction", "ewc_lambda", "lwf_lambda",
             "lwf_temperature", "fisher_samples", "labels", "n_replay", "sample_steps", "gen_steps", "smd_update")


def _code() -> tuple:
    return (sys.modules[__name__], smg, continual, replay, segmentation, SegUNet)


def first_stage(setup: ArmSetup, study: Study, seed: int) -> tuple[nn.Module, dict, list[str]]:
    """The seed's first-stage segmenter (shared by every arm), its curve and the data lineage."""
    torch.manual_seed(seed)
    model = build_segmenter(setup, study.channels, study.n_labels)
    lineage = [data_hash(study.seen[0].train_images, study.seen[0].train_labels)]
    hyper = {**setup.hyper(SEG_HYPER), "seed": seed, "arm": "stage 1"}
    curve = train_or_load("smg-seg", model, lambda: train_stage(model, setup, 0, study, SEQFT, {}, None, EWCState(),
                                                                  seed),
                          data=lineage, hyper=hyper, code=_code())
    return model, curve, lineage


@dataclass
class ArmResult:
    """One arm of one seed: Dice per test image of every site after every stage, and the loss curves (every 25
    steps)."""

    seed: int
    arm: str
    #: stage → site name → Dice per test image
    dice: list[dict[str, np.ndarray]] = field(default_factory=list)
    curves: list[dict[str, list[float]]] = field(default_factory=list)


def run_arm(setup: ArmSetup, study: Study, arm: str, seed: int, smd: SMDRun | None) -> ArmResult:
    """One arm of one seed through every stage (the first shared, from the cache)."""
    first, curve0, lineage = first_stage(setup, study, seed)
    result = ArmResult(seed, arm, [evaluate(first, study)], [curve0])
    model = build_segmenter(setup, study.channels, study.n_labels)
    model.load_state_dict(first.state_dict())
    ewc = EWCState()
    hyper = {**setup.hyper(SEG_HYPER + ARM_HYPER), "seed": seed, "arm": arm}
    for k in range(1, len(study.seen)):
        previous = copy.deepcopy(model).eval()
        if ARMS[arm]["objective"] == "ewc":
            ewc.update(previous, study.seen[k - 1], setup.fisher_samples, seed * 13 + k)
        past = past_for_arm(arm, setup.buffer_fraction, k, study, smd, previous, seed)
        lineage = [*lineage, data_hash(study.seen[k].train_images, study.seen[k].train_labels, past)]
        curve = train_or_load("smg-seg", model, lambda k=k, past=past, previous=previous: train_stage(
            model, setup, k, study, arm, past, previous, ewc, seed), data=lineage, hyper={**hyper, "stage": k},
            code=_code())
        result.curves.append(curve)
        result.dice.append(evaluate(model, study))
    return result


def prior_baseline(study: Study) -> dict[str, np.ndarray]:
    """The no-input control: every test image gets the per-pixel most frequent label of all seen sites' training
    maps; Dice per test image of every site."""
    labels = torch.cat([s.train_labels for s in study.seen])
    counts = torch.stack([(labels == c).sum(0) for c in study.labels])
    prior = counts.argmax(0)
    return {s.name: _dice_values(dice_per_image(prior.expand_as(s.test_labels), s.test_labels,
                                                list(range(1, study.n_labels))))
            for s in study.sites}


# ------------------------------------------------------------------------------------------------ orchestration


def _smd_job(setup: SMDSetup, study: Study, threads: int) -> None:
    torch.set_num_threads(threads)
    run_smd(setup, study)


def _arm_job(setup: ArmSetup, study: Study, arm: str, seed: int, smd: SMDRun | None,
             threads: int) -> ArmResult:
    torch.set_num_threads(threads)
    return run_arm(setup, study, arm, seed, smd)


#: Relative cost of a training step by objective (measured: a PGA step is about six plain ones).
STEP_COST = {"pga": 6.0, "arbitrary": 4.0, "orientational": 3.0, "mldg": 3.0, "lwf": 1.3, "ewc": 1.2, "augment": 1.1,
             "mix": 1.1, "joint": 1.0, "plain": 1.0}


def _by_cost(arms: list[str]) -> list[str]:
    return sorted(arms, key=lambda a: -STEP_COST[ARMS[a]["objective"]])


def _light(run: SMDRun) -> SMDRun:
    """What an arm needs of the generator run (its replay), light enough to send to a worker."""
    return SMDRun(run.banks, run.curves, None)


@dataclass
class SmgRun:
    """The protocol's output in memory: the generator run (with its model), every arm's result by seed, the study
    and the no-input control. :func:`summarise` keeps what the page shows."""

    smd: SMDRun | None
    seeds: dict[int, dict[str, ArmResult]]
    study: Study
    prior: dict[str, np.ndarray]


def run_all(gen: SMDSetup, arms: ArmSetup, schedule: Schedule, study: Study) -> SmgRun:
    """Every seed's first-stage segmenter (here, cached: all arms of the seed start from it), then the generator and
    the arms that need no replay side by side, then the SMD arms once the generator is done, in
    ``schedule.workers`` processes (one job per arm and seed). Workers are spawned: from a script, call under
    ``if __name__ == "__main__":``."""
    workers = schedule.workers
    threads = max(1, schedule.threads // workers) if workers > 1 else schedule.threads
    seeds = range(schedule.seeds)
    smd_arms = [a for a in schedule.arms if ARMS[a]["past"] == "smd"]
    other_arms = [a for a in schedule.arms if a not in smd_arms]
    torch.set_num_threads(threads)
    for s in seeds:
        first_stage(arms, study, s)
    results: list[ArmResult] = []
    smd = None
    if workers == 1:
        if smd_arms:
            smd = run_smd(gen, study)
        results = [run_arm(arms, study, a, s, smd) for s in seeds for a in other_arms + smd_arms]
    else:
        with spawn_pool(workers) as pool:
            generator = pool.submit(_smd_job, gen, study, threads) if smd_arms else None
            # longest jobs first, so that the two workers finish together
            futures = [pool.submit(_arm_job, arms, study, a, s, None, threads) for a in _by_cost(other_arms)
                       for s in seeds]
            if generator is not None:
                generator.result()
                smd = run_smd(gen, study)  # from the cache
                futures += [pool.submit(_arm_job, arms, study, a, s, _light(smd), threads)
                            for a in _by_cost(smd_arms) for s in seeds]
            results = [f.result() for f in futures]
    torch.set_num_threads(schedule.threads)
    by_seed: dict[int, dict[str, ArmResult]] = {s: {} for s in seeds}
    for r in results:
        by_seed[r.seed][r.arm] = r
    ordered = {s: {a: by_seed[s][a] for a in schedule.arms} for s in seeds}
    return SmgRun(smd, ordered, study, prior_baseline(study))


# ------------------------------------------------------------------------------------------------ Taylor check


@dataclass
class TaylorRow:
    """One α = β of the Taylor check: |meta − explicit|, the cosine of their gradients, and the gap's ratio to the
    previous (twice larger) α's (None for the first)."""

    alpha: float
    gap: float
    grad_cosine: float
    ratio: float | None = None


@dataclass
class TaylorCheck:
    """:func:`taylor_check`'s measurements (C4 and the size of the alignment terms)."""

    rows: list[TaylorRow]
    ip_o: float
    ip_a: float
    alignment_share: float
    alpha: float
    inner_step: float
    adam_step: float
    large_alpha: float
    alignment_share_large: float
    meta_cosine_large: float


def taylor_check(setup: ArmSetup, study: Study, n: int = 8) -> TaylorCheck:
    """The meta-objective against the explicit PGA objective on the chapter's own segmenter (seed 0 after the first
    stage, float64) and data (D: the last seen site; R: the first; A, B: the others split in two), at α = β = 4a,
    2a, a with a the run's ``alpha``: the gap |M_o + λ_a M_a − PGA| and its ratio per halving (≈ 4 if the gap is
    O(α²)); also the cosine between the two objectives' gradients, how far alignment moves the update at the run's
    α, ‖∇PGA − ∇(L_D + L_R + L_A + L_B)‖ / ‖∇(L_D + L_R + L_A + L_B)‖, and the inner SGD step α‖g_D‖ beside the
    size of an outer Adam step (about lr·√P for P weights). Second-order gradients: compute side only."""
    model, _, _ = first_stage(setup, study, 0)
    model = model.double().cpu().eval()
    labels = study.labels

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_ce_loss(logits, target, labels)

    def batch(site: int, lo: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        s = study.seen[site]
        return s.train_images[lo:lo + n].double(), s.train_labels[lo:lo + n]

    D, R = batch(-1), batch(0)
    A, B = (batch(1), batch(2)) if len(study.seen) > 3 else (batch(0, n), batch(-1, n))
    params = [q for q in model.parameters() if q.requires_grad]
    base = setup.alpha if setup.alpha > 0 else 1e-3
    rows: list[TaylorRow] = []
    for scale in (4, 2, 1):
        a = base * scale
        meta = smg.dual_meta_objective(model, loss_fn, D, R, A, B, alpha=a, beta=a, lam_a=setup.lam_a)
        explicit = smg.pga_objective(model, loss_fn, D, R, A, B, alpha=a, beta=a, lam_a=setup.lam_a)
        g_meta = smg.flat_grad(meta, params)
        g_pga = smg.flat_grad(explicit, params)
        rows.append(TaylorRow(a, abs(meta.item() - explicit.item()),
                              float(torch.nn.functional.cosine_similarity(g_meta, g_pga, dim=0))))
    for prev, row in zip(rows, rows[1:], strict=False):
        row.ratio = prev.gap / row.gap if row.gap > 0 else float("inf")
    terms = smg.alignment_terms(model, loss_fn, D, R, A, B)
    plain = smg.flat_grad(sum(smg.batch_loss(model, loss_fn, X) for X in (D, R, A, B)), params)
    pga = g_pga  # the last α of the loop is the run's own
    share = float((pga - plain).norm() / plain.norm())
    large = setup.large_alpha
    pga_large = smg.flat_grad(smg.pga_objective(model, loss_fn, D, R, A, B, alpha=large, beta=large,
                                                lam_a=setup.lam_a), params)
    meta_large = smg.flat_grad(smg.dual_meta_objective(model, loss_fn, D, R, A, B, alpha=large, beta=large,
                                                       lam_a=setup.lam_a), params)
    inner = base * float(terms["g_D"].norm())
    adam = setup.seg_lr * float(np.sqrt(sum(q.numel() for q in params)))  # every coordinate moves by about lr
    return TaylorCheck(rows, float(terms["ip_o"]), float(terms["ip_a"]), share, base, inner, adam, large,
                       float((pga_large - plain).norm() / plain.norm()),
                       float(torch.nn.functional.cosine_similarity(meta_large, pga_large, dim=0)))


# ------------------------------------------------------------------------------------------------ results

#: Images per past site that the replay figure shows (fewer where a site has fewer).
REPLAY_SHOWN = 8


@dataclass
class SiteInfo:
    """What the page needs of a site: its name and how it looks."""

    name: str
    description: str


@dataclass
class SmgResults(ResultsData):
    """Everything the SMG-Learning page shows: the sites learned in order and those never trained on, every arm's
    Dice per test image after every stage by seed (seed → arm → :class:`ArmResult`), the no-input control's Dice per
    test image, SMD's loss per stage (float32), the images of the replay figure (past site → real training images
    and the SMD images replayed at the last stage, mapped to [0, 1], [n, H, W] or [n, H, W, 3], float32), the Taylor
    check (C4) and the parameter counts of the networks the run builds."""

    seen: list[SiteInfo]
    unseen: list[SiteInfo]
    seeds: dict[int, dict[str, ArmResult]]
    prior: dict[str, np.ndarray]
    smd_curves: list[np.ndarray]
    real: dict[str, np.ndarray]
    replayed: dict[str, np.ndarray]
    taylor: TaylorCheck | None
    model_sizes: dict[str, int]

    @property
    def sites(self) -> list[SiteInfo]:
        return [*self.seen, *self.unseen]


def _shown(images: Tensor) -> np.ndarray:
    """Images [n, C, H, W] in [−1, 1] as a figure shows them: [0, 1], grey [n, H, W] or colour [n, H, W, C]."""
    shown = replay.decode_image(images.float())
    shown = shown[:, 0] if shown.shape[1] == 1 else shown.permute(0, 2, 3, 1)
    return shown.numpy().astype(np.float32)


def replay_figure(smd: SMDRun | None, study: Study, n: int = REPLAY_SHOWN) -> tuple[dict, dict]:
    """(real, replayed): for every past site, its first ``n`` real training images and the first ``n`` SMD images
    replayed at the last stage (``n`` lowered to what every site has)."""
    if smd is None:
        return {}, {}
    k = len(study.seen) - 1
    replayed = smd.replay(k, study.channels, study.n_labels)
    n = min(n, *(len(v[0]) for v in replayed.values()), *(len(s.train_images) for s in study.seen))
    real = {study.seen[j].name: _shown(study.seen[j].train_images[:n]) for j in range(k)}
    return real, {study.seen[j].name: _shown(replayed[j][0][:n]) for j in range(k)}


def model_sizes(gen: SMDSetup, arms: ArmSetup, study: Study) -> dict[str, int]:
    """Parameter counts of the networks the run builds (built here without touching torch's global random state)."""
    with torch.random.fork_rng():
        rows = {"segmenter (UNet)": build_segmenter(arms, study.channels, study.n_labels),
                "SMD generator (diffusers UNet2DConditionModel + site prompts)": build_smd(gen, len(study.seen),
                                                                                           study.channels)}
    return {name: sum(q.numel() for q in m.parameters()) for name, m in rows.items()}


def summarise(run: SmgRun, gen: SMDSetup, arms: ArmSetup) -> SmgResults:
    """What the page shows of a run (:class:`SmgResults`), with the Taylor check on the run's own segmenter."""
    study = run.study
    curves = [np.asarray(c["loss"], dtype=np.float32) for c in run.smd.curves] if run.smd is not None else []
    real, replayed = replay_figure(run.smd, study)
    return SmgResults([SiteInfo(s.name, s.description) for s in study.seen],
                      [SiteInfo(s.name, s.description) for s in study.unseen], run.seeds, run.prior, curves, real,
                      replayed, taylor_check(arms, study), model_sizes(gen, arms, study))
