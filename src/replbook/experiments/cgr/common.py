"""The CGR protocol both profiles run: tasks arrive in sequence; one joint image + mask diffusion generator per
replay variant learns them with its own replay; one segmenter per arm learns them with real current data and
(synthetic or real) replay of the past; Dice of every task is measured after every stage.

Generator variants (one diffusion model each, :mod:`replbook.replay`):
  ``joint``: L_joint only (plain joint diffusion); ``bjd``: L_joint + the conditional terms (BJD);
  ``cgr``: BJD + the task-oriented adapter (TOA), trained.
Segmenter arms: see :data:`ARMS`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from replbook import replay, segmentation
from replbook.cache import data_hash, train_or_load
from replbook.codec import ResultsData
from replbook.models import SegUNet
from replbook.parallel import in_workers
from replbook.profiles import ParameterError, resolve_device
from replbook.progress import progress
from replbook.segmentation import dice_ce_loss, dice_per_image, predict

JOINT, SEQFT, BUFFER = "joint training", "sequential fine-tuning", "real buffer"
PSEUDO, JOINT_REPLAY, BJD, CGR = "image replay + pseudo-labels", "joint diffusion replay", "BJD replay", "CGR"
#: Segmenter arms → what replays the past. All arms share the stage-1 model of a seed.
ARMS: dict[str, dict[str, Any]] = {
    JOINT: {"past": "real", "fraction": 1.0, "uniform": True},  # upper bound: every image kept, tasks sampled alike
    SEQFT: {"past": None},                            # lower bound: no replay
    BUFFER: {"past": "real", "fraction": None},        # a small real buffer (buffer_fraction): privacy-violating
    PSEUDO: {"past": "pseudo", "generator": "bjd"},    # generated images, labels from the previous segmenter
    JOINT_REPLAY: {"past": "synthetic", "generator": "joint"},
    BJD: {"past": "synthetic", "generator": "bjd"},
    CGR: {"past": "synthetic", "generator": "cgr"},
}
#: Generator variants → (BJD setting, with TOA).
GENERATORS: dict[str, dict[str, Any]] = {
    "joint": {"bjd": "joint", "toa": False},
    "bjd": {"bjd": None, "toa": False},  # None: the run's bjd_mode
    "cgr": {"bjd": None, "toa": True},
}
#: Pairs per past task that the replay figure shows.
REPLAY_SHOWN = 6


@dataclass(frozen=True)
class GeneratorSetup:
    """The replay generators: architecture, training and sampling (the parameters of the same names). Small and
    picklable: it is what a worker process receives."""

    size: int
    gen_widths: list[int]
    gen_layers: int
    attention_levels: int
    prompt_tokens: int
    prompt_dim: int
    attention_head_dim: int
    eps_skip: bool
    train_toa: bool
    gen_steps: int
    gen_batch: int
    gen_lr: float
    bjd_mode: str
    bjd_batch: str
    diffusion_loss: str
    n_replay: int
    sample_steps: int
    sample_batch: int
    device: str

    def hyper(self) -> dict[str, Any]:
        """What a cached generator stage or replay bank depends on, besides its data, variant, seed and lineage."""
        keys = ("size", "eps_skip", "bjd_batch", "gen_widths", "attention_levels", "gen_layers", "prompt_tokens",
                "prompt_dim", "attention_head_dim", "gen_lr", "gen_batch", "gen_steps", "diffusion_loss",
                "train_toa", "n_replay", "sample_steps", "sample_batch")
        return {key: getattr(self, key) for key in keys}


@dataclass(frozen=True)
class SegmenterSetup:
    """The segmenters: architecture and training (the parameters of the same names)."""

    size: int
    seg_widths: list[int]
    seg_steps: int
    seg_batch: int
    seg_lr: float
    buffer_fraction: float
    device: str


@dataclass(frozen=True)
class Schedule:
    """Which arms and seeds run, and how the work is spread over processes."""

    arms: list[str]
    seeds: int
    gen_seeds: int
    workers: int
    threads: int


@dataclass
class Task:
    """One task of the sequence: real training and test data, labels local to the task (0 = background)."""

    name: str
    structures: tuple[str, ...]
    offset: int  # local label i > 0 is global label i + offset
    train_images: Tensor  # [N, C, H, W] in [-1, 1]
    train_labels: Tensor  # [N, H, W] int64, local
    test_images: Tensor
    test_labels: Tensor

    @property
    def n_local(self) -> int:
        return len(self.structures) + 1

    def to_global(self, labels: Tensor) -> Tensor:
        return torch.where(labels > 0, labels + self.offset, labels)


def validate(p: dict[str, Any]) -> None:
    """Checks across parameters, before any work."""
    unknown = [a for a in p["arms"] if a not in ARMS]
    if unknown:
        raise ParameterError(f"parameter 'arms': unknown {unknown}; choose from {list(ARMS)}.")
    for need in (SEQFT, CGR):
        if need not in p["arms"]:
            raise ParameterError(f"parameter 'arms' must include {need!r}: the claims compare CGR with it.")
    if len(set(p["order"])) != len(p["order"]) or len(p["order"]) < 2:
        raise ParameterError(f"parameter 'order' needs at least two distinct tasks; got {p['order']}.")
    for name in ("gen_widths", "seg_widths"):
        f = 2 ** (len(p[name]) - 1)
        if p["size"] % f:
            raise ParameterError(f"parameter 'size' ({p['size']}) must be divisible by {f} for {name}={p[name]}.")
    if p["device"] == "cuda" and not torch.cuda.is_available():
        raise ParameterError("parameter 'device' is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'.")
    if p["workers"] > 1 and resolve_device(p["device"]).type == "cuda":
        raise ParameterError("parameter 'workers' must be 1 on a GPU (the workers would share it); set workers=1.")
    if p["gen_seeds"] not in (1, p["seeds"]):
        raise ParameterError(f"parameter 'gen_seeds' must be 1 or equal to 'seeds' ({p['seeds']}): every seed then "
                             f"has its own generators, so the interval over seeds holds their spread; got "
                             f"{p['gen_seeds']}.")


# ------------------------------------------------------------------------------------------------ generators


def build_generator(gen: GeneratorSetup, n_tasks: int, image_channels: int, toa: bool,
                    prompt_embeddings: Tensor | None = None) -> replay.PromptedDenoiser:
    """A ``UNet2DConditionModel`` over image + mask channels, cross-attention at the ``attention_levels`` coarsest
    levels (one in the miniature: the cheapest placement the spec measured; three officially), with task prompts
    and, for CGR, the task-oriented adapter. The prompts
    are learned tokens, or fixed ``prompt_embeddings`` [K, L, D] (the paper profile's frozen CLIP text embeddings
    of the official prompts)."""
    try:
        unet = replay.conditional_unet(gen.size, image_channels + 1, gen.gen_widths, layers=gen.gen_layers,
                                       attention_levels=gen.attention_levels, context_dim=gen.prompt_dim,
                                       head_dim=gen.attention_head_dim)
    except ValueError as e:
        raise ParameterError(f"parameter 'attention_levels': {e}") from None
    if prompt_embeddings is None:  # fixed random tokens: the stand-in for frozen CLIP embeddings; only TOA adapts them
        prompts = replay.TaskPrompts(n_tasks, gen.prompt_tokens, gen.prompt_dim, trainable=False)
    else:
        if tuple(prompt_embeddings.shape) != (n_tasks, gen.prompt_tokens, gen.prompt_dim):
            raise ParameterError(f"prompt embeddings of shape {tuple(prompt_embeddings.shape)} do not match "
                                 f"{n_tasks} tasks × prompt_tokens={gen.prompt_tokens} × "
                                 f"prompt_dim={gen.prompt_dim}.")
        prompts = replay.TaskPrompts.from_embeddings(prompt_embeddings)
    adapter = replay.TaskOrientedAdapter(n_tasks, gen.prompt_dim) if toa else None
    if adapter is not None and not gen.train_toa:  # the official code's behaviour (defect 1): TOA never trained
        adapter.requires_grad_(False)
    skip = replay.make_scheduler("ddpm").alphas_cumprod if gen.eps_skip else None
    return replay.PromptedDenoiser(unet, prompts, adapter, skip)


def _encode(task: Task, labels: Tensor) -> Tensor:
    return replay.encode_mask(labels, task.n_local)


def train_generator_stage(gen: replay.PromptedDenoiser, setup: GeneratorSetup, k: int, task: Task,
                          past: dict[int, tuple[Tensor, Tensor]], bjd_setting: str, seed: int) -> dict[str, list]:
    """Stage k of a generator: real batches of task k; for k > 0 ("memory-evoking replay") half of each batch is the
    generator's own samples of the past tasks, split evenly, each with its own task id. Returns the loss curve."""
    g = torch.Generator().manual_seed(seed * 1009 + k)  # batches and noise drawn on the CPU: the same on any device
    device = next(gen.parameters()).device
    sched = replay.make_scheduler("ddpm")
    opt = torch.optim.AdamW([q for q in gen.parameters() if q.requires_grad], lr=setup.gen_lr)
    batch = setup.gen_batch
    n_real = batch if not past else batch // 2
    curve: dict[str, list] = {"joint": [], "cond": []}
    gen.train()
    for step in progress(range(setup.gen_steps), desc=f"generator stage {k + 1}", leave=False):
        idx = torch.randint(0, len(task.train_images), (n_real,), generator=g)
        images, masks = [task.train_images[idx]], [_encode(task, task.train_labels[idx])]
        ids = [torch.full((n_real,), k)]
        for j, (img, msk) in past.items():
            m = max(1, (batch - n_real) // len(past))
            jdx = torch.randint(0, len(img), (m,), generator=g)
            images.append(img[jdx]); masks.append(msk[jdx]); ids.append(torch.full((m,), j))  # noqa: E702
        # shuffled, so that a split BJD batch puts real and replayed pairs in both of its halves
        order = torch.randperm(sum(len(i) for i in ids), generator=g)
        image, mask, tid = torch.cat(images)[order], torch.cat(masks)[order], torch.cat(ids)[order]
        t = torch.randint(0, sched.config.num_train_timesteps, (len(tid),), generator=g)
        noise = torch.randn(image.shape[0], image.shape[1] + 1, *image.shape[2:], generator=g)
        image, mask, tid, t, noise = (x.to(device) for x in (image, mask, tid, t, noise))
        out = replay.bjd_loss(gen, image, mask, t, noise, tid, replay.bjd_mode_at(bjd_setting, step),
                              scheduler=sched, loss=setup.diffusion_loss, split=setup.bjd_batch == "split")
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        curve["joint"].append(round(out["joint"].item(), 5))
        curve["cond"].append(round(out["cond"].item(), 5))
    gen.eval()
    return curve


class ReplayBank(nn.Module):
    """Generated pairs held as buffers, so the cache stores and verifies them like weights; half precision (the
    paper profile's banks hold thousands of 256² pairs per task)."""

    def __init__(self, n: int, channels: int, size: int):
        super().__init__()
        self.register_buffer("images", torch.zeros(n, channels, size, size, dtype=torch.float16))
        self.register_buffer("masks", torch.zeros(n, 1, size, size, dtype=torch.float16))
        self.register_buffer("ids", torch.zeros(n, dtype=torch.long))


@dataclass
class GeneratorRun:
    """One generator variant through the sequence: the replay drawn after each stage (``banks[k]`` holds samples of
    tasks 0..k, drawn after training on task k), the loss curves, and the final model."""

    variant: str
    banks: list[ReplayBank] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)
    model: replay.PromptedDenoiser | None = None

    def pairs(self, k: int, tasks: list[Task]) -> dict[int, tuple[Tensor, Tensor]]:
        """Replay of tasks 0..k−1 available at stage k: {task index: (images [N, C, H, W], local labels [N, H, W])},
        the generated mask channel decoded with that task's own label count (the official post-processing rounds
        to labels too)."""
        if k == 0:
            return {}
        bank = self.banks[k - 1]
        out = {}
        for j in range(k):
            rows = bank.ids == j
            out[j] = (bank.images[rows].float(), replay.decode_mask(bank.masks[rows].float(), tasks[j].n_local))
        return out

    def past(self, k: int, tasks: list[Task]) -> dict[int, tuple[Tensor, Tensor]]:
        """The generator's own replay at stage k: :meth:`pairs` with the labels re-encoded on the fixed grey levels,
        so that off-level generated values do not compound from stage to stage."""
        return {j: (img, replay.encode_mask(lab, tasks[j].n_local)) for j, (img, lab) in self.pairs(k, tasks).items()}


def run_generator(setup: GeneratorSetup, tasks: list[Task], variant: str, gen_seed: int,
                  prompt_embeddings: Tensor | None = None) -> GeneratorRun:
    """Train one generator variant on tasks 0..K−2 (the last task's generator would replay for no later stage) and
    draw its replay after each stage; every stage and bank is cached by content hash."""
    spec = GENERATORS[variant]
    setting = spec["bjd"] or setup.bjd_mode
    channels, size = tasks[0].train_images.shape[1], setup.size
    torch.manual_seed(gen_seed)
    device = resolve_device(setup.device)
    gen = build_generator(setup, len(tasks), channels, spec["toa"], prompt_embeddings).to(device)
    # the whole replay kernel and this module: a generator stage depends on the replay it trained on and the code
    # that drew it, and the replay drawn after it on everything that trained it
    generator_code = (replay, sys.modules[__name__])
    run = GeneratorRun(variant)
    lineage: list[str] = []  # the data of every earlier stage: a stage's result depends on all of them
    for k in range(len(tasks) - 1):
        task = tasks[k]
        lineage.append(data_hash(task.train_images, task.train_labels))
        hyper = {**setup.hyper(), "variant": variant, "bjd": setting, "seed": gen_seed,
                 "prompts": None if prompt_embeddings is None else data_hash(prompt_embeddings),
                 "stage": k, "lineage": list(lineage), "order": [t.name for t in tasks]}
        past = run.past(k, tasks)
        curve = train_or_load(f"cgr-gen-{variant}", gen,
                              lambda k=k, task=task, past=past: train_generator_stage(gen, setup, k, task, past,
                                                                                      setting, gen_seed),
                              data=lineage, hyper=hyper,
                              code=generator_code)
        run.curves.append(curve)
        n = setup.n_replay * (k + 1)
        bank = ReplayBank(n, channels, size)

        def draw(bank: ReplayBank = bank, k: int = k, n: int = n) -> dict:
            ids = torch.arange(k + 1).repeat_interleave(setup.n_replay)
            images, masks = replay.sample_pairs(gen, ids, channels, size, setup.sample_steps,
                                                generator=torch.Generator().manual_seed(gen_seed * 7919 + k),
                                                batch_size=setup.sample_batch, device=device)
            bank.images.copy_(images)
            bank.masks.copy_(masks)
            bank.ids.copy_(ids)
            return {"n": n}

        train_or_load(f"cgr-replay-{variant}", bank, draw, data=lineage, hyper=hyper,
                      code=generator_code)
        run.banks.append(bank)
    run.model = gen
    return run


# ------------------------------------------------------------------------------------------------ segmenters


def seen_labels(tasks: list[Task], k: int) -> list[int]:
    """Global labels known after stage k (background first)."""
    return [0] + [t.offset + i for t in tasks[: k + 1] for i in range(1, t.n_local)]


def train_segmenter_stage(model: nn.Module, setup: SegmenterSetup, k: int, tasks: list[Task],
                          past: dict[int, tuple[Tensor, Tensor]], seed: int, uniform: bool = False) -> dict:
    """Stage k: batches of real task-k data; when there is replay, half the batch is past pairs (global labels),
    split evenly over the past tasks (the official 8 real + 8 synthetic), or with ``uniform`` an equal share for
    every task (joint training). Adam with cosine annealing to 0.1·lr."""
    g = torch.Generator().manual_seed(seed * 104729 + k)
    device = next(model.parameters()).device
    task, seen = tasks[k], seen_labels(tasks, k)
    batch = setup.seg_batch
    # half real current, half replay (official); joint training samples every task alike
    n_real = batch if not past else batch // (len(past) + 1) if uniform else batch // 2
    opt = torch.optim.Adam(model.parameters(), lr=setup.seg_lr, weight_decay=3e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, setup.seg_steps, eta_min=0.1 * setup.seg_lr)
    curve = []
    model.train()
    for step in range(setup.seg_steps):
        idx = torch.randint(0, len(task.train_images), (n_real,), generator=g)
        images, labels = [task.train_images[idx]], [task.to_global(task.train_labels[idx])]
        for img, lab in past.values():
            m = max(1, (batch - n_real) // len(past))
            jdx = torch.randint(0, len(img), (m,), generator=g)
            images.append(img[jdx])
            labels.append(lab[jdx])
        x, y = torch.cat(images).to(device), torch.cat(labels).to(device)
        flip = (torch.rand(len(x), generator=g) < 0.5).to(device)  # horizontal flips (the official code also rotates)
        x, y = torch.where(flip[:, None, None, None], x.flip(-1), x), torch.where(flip[:, None, None], y.flip(-1), y)
        loss = dice_ce_loss(model(x), y, seen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == setup.seg_steps - 1:
            curve.append(round(loss.item(), 4))
    model.eval()
    return {"loss": curve}


def build_segmenter(setup: SegmenterSetup, channels: int, n_labels: int) -> SegUNet:
    """The segmenter on the run's device."""
    return SegUNet(channels, n_labels, tuple(setup.seg_widths)).to(resolve_device(setup.device))


def real_buffer(task: Task, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A random ``fraction`` of a past task's real training pairs (global labels), at least one."""
    n = max(1, round(fraction * len(task.train_images)))
    idx = torch.randperm(len(task.train_images), generator=torch.Generator().manual_seed(seed))[:n]
    return task.train_images[idx], task.to_global(task.train_labels[idx])


def past_for_arm(arm: str, buffer_fraction: float, k: int, tasks: list[Task], generators: dict[str, GeneratorRun],
                 previous: nn.Module, seed: int) -> dict[int, tuple[Tensor, Tensor]]:
    """What arm ``arm`` replays at stage k: {past task: (images, global labels)}; the real-buffer arm keeps
    ``buffer_fraction`` of each past task's real images."""
    spec = ARMS[arm]
    if spec["past"] is None or k == 0:
        return {}
    if spec["past"] == "real":
        fraction = spec["fraction"] or buffer_fraction
        return {j: real_buffer(tasks[j], fraction, seed * 31 + j) for j in range(k)}
    run = generators[spec["generator"]]
    pairs = run.pairs(k, tasks)
    if spec["past"] == "pseudo":  # the generated masks are thrown away; the previous segmenter labels the images
        seen = seen_labels(tasks, k - 1)
        return {j: (img, predict(previous, img, seen)) for j, (img, _) in pairs.items()}
    return {j: (img, tasks[j].to_global(lab)) for j, (img, lab) in pairs.items()}


@dataclass
class SeedResult:
    """One segmenter seed: Dice per test image of every arm after every stage, the replay consistency and the
    segmenters' loss curves (every 25 steps)."""

    seed: int
    gen_seed: int
    #: arm → stage → task name → Dice per test image
    dice: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    #: generator variant → task name → Dice per generated pair between its mask and the oracle's prediction
    consistency: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    curves: dict[str, list[dict[str, list[float]]]] = field(default_factory=dict)


def _dice_values(values: Any) -> np.ndarray:
    """Dice per image rounded to 5 decimals, as float64 (saved as they are, so the page's intervals are exact)."""
    return np.array([round(float(v), 5) for v in values], dtype=np.float64)


def evaluate(model: nn.Module, tasks: list[Task], k: int) -> dict[str, np.ndarray]:
    """Dice per test image of every task seen so far, over each task's structures."""
    seen = seen_labels(tasks, k)
    out = {}
    for task in tasks[: k + 1]:
        pred = predict(model, task.test_images, seen)
        out[task.name] = _dice_values(dice_per_image(pred, task.to_global(task.test_labels),
                                                     [task.offset + i for i in range(1, task.n_local)]))
    return out


def run_seed(seg: SegmenterSetup, gen: GeneratorSetup, arms: list[str], tasks: list[Task],
             generators: dict[str, GeneratorRun], seed: int, gen_seed: int) -> SeedResult:
    """Every arm of one seed: a shared stage-1 segmenter, then each arm through stages 2..K (``gen``: the settings
    of the generators whose replay the arms train on, part of every cached stage's key)."""
    result = SeedResult(seed, gen_seed)
    channels, n_labels = tasks[0].train_images.shape[1], max(t.offset + t.n_local for t in tasks)
    hyper = {"size": seg.size, "seg_widths": seg.seg_widths, "seg_batch": seg.seg_batch, "seg_lr": seg.seg_lr,
             "seg_steps": seg.seg_steps, "buffer_fraction": seg.buffer_fraction, "n_replay": gen.n_replay,
             "sample_steps": gen.sample_steps, "gen_steps": gen.gen_steps, "bjd_mode": gen.bjd_mode,
             "train_toa": gen.train_toa}
    hyper.update(seed=seed, gen_seed=gen_seed, order=[t.name for t in tasks])
    code = (sys.modules[__name__], replay, segmentation, SegUNet)
    torch.manual_seed(seed)
    first = build_segmenter(seg, channels, n_labels)
    lineage = [data_hash(tasks[0].train_images, tasks[0].train_labels)]
    curve0 = train_or_load("cgr-seg", first, lambda: train_segmenter_stage(first, seg, 0, tasks, {}, seed),
                           data=lineage, hyper={**hyper, "arm": "stage 1"}, code=code)
    stage1 = evaluate(first, tasks, 0)
    oracle, pseudo_last = None, None
    for arm in progress(arms, desc=f"seed {seed}: segmenters", leave=False):
        model = build_segmenter(seg, channels, n_labels)
        model.load_state_dict(first.state_dict())
        result.dice[arm] = [stage1]
        result.curves[arm] = [curve0]
        arm_lineage = list(lineage)
        for k in range(1, len(tasks)):
            previous = build_segmenter(seg, channels, n_labels)
            previous.load_state_dict(model.state_dict())
            past = past_for_arm(arm, seg.buffer_fraction, k, tasks, generators, previous, seed)
            arm_lineage.append(data_hash(tasks[k].train_images, tasks[k].train_labels,
                                         {j: v for j, v in past.items()}))
            curve = train_or_load("cgr-seg", model,
                                  lambda model=model, k=k, past=past, arm=arm: train_segmenter_stage(
                                      model, seg, k, tasks, past, seed, uniform=ARMS[arm].get("uniform", False)),
                                  data=arm_lineage, hyper={**hyper, "arm": arm, "stage": k}, code=code)
            result.curves[arm].append(curve)
            result.dice[arm].append(evaluate(model, tasks, k))
            if arm == PSEUDO and k == len(tasks) - 1:
                pseudo_last = past
        if arm == JOINT:
            oracle = model
    if oracle is not None:
        result.consistency = replay_consistency(oracle, tasks, generators, pseudo_last)
    return result


def replay_consistency(oracle: nn.Module, tasks: list[Task], generators: dict[str, GeneratorRun],
                       pseudo: dict[int, tuple[Tensor, Tensor]] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """How well replayed labels match their images: Dice between the label map replayed with an image and the
    prediction of the joint-training segmenter (every real image kept) on that image, per pair, for the replay of the
    last stage (BJD's correspondence claim). One entry per generator variant (its own masks), and ``"pseudo"`` for
    the pseudo-label arm's labels of BJD's images (the previous segmenter's predictions): the control that says
    whether generated masks or pseudo-labels fit the generated images better."""
    k = len(tasks) - 1
    seen = seen_labels(tasks, k)
    sources = {v: {j: (img, tasks[j].to_global(lab)) for j, (img, lab) in run.pairs(k, tasks).items()}
               for v, run in generators.items()}
    if pseudo:
        sources["pseudo"] = pseudo
    out: dict[str, dict[str, np.ndarray]] = {}
    for source, pairs in sources.items():
        out[source] = {}
        for j, (img, lab) in pairs.items():
            task = tasks[j]
            pred = predict(oracle, img, seen)
            out[source][task.name] = _dice_values(dice_per_image(
                pred, lab, [task.offset + i for i in range(1, task.n_local)]))
    return out


def generators_needed(arms: list[str]) -> list[str]:
    """Generator variants the arms draw on, in :data:`GENERATORS` order."""
    wanted = {ARMS[a].get("generator") for a in arms}
    return [v for v in GENERATORS if v in wanted]


def _generator_job(setup: GeneratorSetup, tasks: list[Task], variant: str, gen_seed: int,
                   prompt_embeddings: Tensor | None, threads: int) -> None:
    """A worker's job: train (or find cached) one generator variant; the parent then loads it from the cache."""
    torch.set_num_threads(threads)
    run_generator(setup, tasks, variant, gen_seed, prompt_embeddings)


def _seed_job(seg: SegmenterSetup, gen: GeneratorSetup, arms: list[str], tasks: list[Task],
              generators: dict[str, GeneratorRun], seed: int, gen_seed: int, threads: int) -> SeedResult:
    torch.set_num_threads(threads)
    return run_seed(seg, gen, arms, tasks, generators, seed, gen_seed)


def _without_model(run: GeneratorRun) -> GeneratorRun:
    """What a segmenter needs of a generator run (its replay), light enough to send to a worker."""
    return GeneratorRun(run.variant, run.banks, run.curves, None)


@dataclass
class CgrRun:
    """The protocol's output in memory: the generator runs of the first generator seed (with their models), every
    seed's result and the tasks. :func:`summarise` keeps what the page shows."""

    generators: dict[str, GeneratorRun]
    seeds: list[SeedResult]
    tasks: list[Task]


def run_all(gen: GeneratorSetup, seg: SegmenterSetup, schedule: Schedule, tasks: list[Task],
            prompt_embeddings: Tensor | None = None) -> CgrRun:
    """Generators for every generator seed, then every segmenter seed (seed s uses generator seed s mod gen_seeds),
    each job in one of ``schedule.workers`` processes. ``prompt_embeddings`` [K, L, D]: fixed task prompts (paper
    profile); learned tokens when ``None``. The workers are spawned: from a script, call this under
    ``if __name__ == "__main__":`` (a notebook needs nothing)."""
    workers = schedule.workers
    threads = max(1, schedule.threads // workers) if workers > 1 else schedule.threads
    variants = generators_needed(schedule.arms)
    jobs = [(gen, tasks, v, gs, prompt_embeddings) for gs in range(schedule.gen_seeds) for v in variants]
    if workers > 1:  # train in the workers; the loop below then loads every stage from the cache
        in_workers(jobs, _generator_job, workers, threads)
    torch.set_num_threads(schedule.threads)
    runs = {gs: {v: run_generator(gen, tasks, v, gs, prompt_embeddings) for v in variants}
            for gs in range(schedule.gen_seeds)}
    light = {gs: {v: _without_model(r) for v, r in rs.items()} for gs, rs in runs.items()}
    seed_jobs = [(seg, gen, schedule.arms, tasks, light[s % schedule.gen_seeds], s, s % schedule.gen_seeds)
                 for s in range(schedule.seeds)]
    seeds = in_workers(seed_jobs, _seed_job, workers, threads)
    torch.set_num_threads(schedule.threads)
    return CgrRun(runs[0], seeds, tasks)


# ------------------------------------------------------------------------------------------------ results


@dataclass
class TaskInfo:
    """What the page needs of a task: its name and its label count (background included)."""

    name: str
    n_local: int


@dataclass
class Pairs:
    """Image–mask pairs a figure shows: the first image channel mapped to [0, 1] (:func:`replay.decode_image`),
    [n, H, W] float32, and the local label maps [n, H, W] uint8."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class CgrResults(ResultsData):
    """Everything the CGR page shows: the tasks in order, every seed's Dice per test image (arm → stage → task) and
    replay consistency, the generators' loss curves (first generator seed; variant → stage → joint / conditional
    term, float32), the pairs of the replay figure (``real``: task → pairs; ``replayed``: variant → past task →
    pairs drawn after the last generator stage) and the parameter counts of the networks the run builds."""

    tasks: list[TaskInfo]
    seeds: list[SeedResult]
    generator_curves: dict[str, list[dict[str, np.ndarray]]]
    real: dict[str, Pairs]
    replayed: dict[str, dict[str, Pairs]]
    model_sizes: dict[str, int]


def _pairs(images: Tensor, labels: Tensor, n: int = REPLAY_SHOWN) -> Pairs:
    return Pairs(replay.decode_image(images[:n, 0].float()).numpy().astype(np.float32),
                 labels[:n].numpy().astype(np.uint8))


def model_sizes(gen: GeneratorSetup, seg: SegmenterSetup, tasks: list[Task]) -> dict[str, int]:
    """Parameter counts of the networks the run builds (built here without touching torch's global random state)."""
    channels, n_labels = tasks[0].train_images.shape[1], max(t.offset + t.n_local for t in tasks)
    with torch.random.fork_rng():
        rows = {"segmenter (UNet)": build_segmenter(seg, channels, n_labels),
                "generator (diffusers UNet2DConditionModel + prompts)": build_generator(gen, len(tasks), channels,
                                                                                        toa=False),
                "generator with TOA (CGR)": build_generator(gen, len(tasks), channels, toa=True)}
    return {name: sum(q.numel() for q in m.parameters()) for name, m in rows.items()}


def summarise(run: CgrRun, gen: GeneratorSetup, seg: SegmenterSetup) -> CgrResults:
    """What the page shows of a run (:class:`CgrResults`)."""
    tasks, k = run.tasks, len(run.tasks) - 1
    curves = {v: [{term: np.asarray(c[term], dtype=np.float32) for term in ("joint", "cond")} for c in r.curves]
              for v, r in run.generators.items()}
    real = {t.name: _pairs(t.train_images, t.train_labels) for t in tasks[:k]}
    replayed = {v: {tasks[j].name: _pairs(img, lab) for j, (img, lab) in r.pairs(k, tasks).items()}
                for v, r in run.generators.items()}
    return CgrResults([TaskInfo(t.name, t.n_local) for t in tasks], run.seeds, curves, real, replayed,
                      model_sizes(gen, seg, tasks))
