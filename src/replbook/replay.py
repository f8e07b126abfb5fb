"""Diffusion replay for continual segmentation: a joint image + mask diffusion model on diffusers.

Shared by two chapters: CGR (arXiv:2406.19796; task prompts, Bayesian joint diffusion and the task-oriented adapter)
and SMG-Learning (arXiv:2406.18037; site prompts). An image x (C channels) and its label map y (one channel) are
diffused together as z = [x; y] (C + 1 channels). Reference: the official CGR code, github.com/jingyzhang/CGR
(MONAI-Generative); written here from the equations, not copied.

* Noise schedule (DDPM, T = 1000, "scaled linear"): β_t = (linspace(√0.0015, √0.0205, T))_t², ᾱ_t = Π_{s≤t}(1 − β_s),
  z_t = √ᾱ_t z_0 + √(1 − ᾱ_t) ε. Sampling: DDIM with η = 0, x̂₀ clipped to [−1, 1], "leading" timesteps. Both come
  from diffusers (:func:`make_scheduler`); this module holds no scheduler arithmetic of its own.
* Bayesian joint diffusion (:func:`bjd_loss`): the joint loss ‖ε − ε_θ([x_t; y_t], t)‖₁ plus the conditional terms
  of the two factorisations p(x, y) = p(y|x)p(x) = p(x|y)p(y): for p(y|x) the input is [x_0; y_t] and the target
  [0; ε_y]; for p(x|y) the input [x_t; y_0] and the target [ε_x; 0].
* Conditioning (:class:`TaskPrompts`, :class:`TaskOrientedAdapter`): learned prompt tokens per task (or site) as the
  cross-attention context, optionally through TOA_k(E) = E + γ_k ⊙ MLP_k(E) with γ_k initialised at 1e-4.
* Masks travel as one channel with a fixed map from labels to grey levels (:func:`encode_mask`), not the official
  per-sample min-max scaling, under which a label's grey level depends on which other labels are present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from torch import Tensor, nn

from replbook.progress import progress

#: The official CGR schedule (MONAI-Generative's DDPM/DDIM as configured in ``train_bjdwithtoa.py``).
OFFICIAL_SCHEDULE: dict[str, Any] = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0205,
                                         beta_schedule="scaled_linear", clip_sample=True,
                                         prediction_type="epsilon", timestep_spacing="leading", steps_offset=0)

#: A denoiser: ``(z_t [B, C, H, W], t (scalar or [B]), context) -> ε̂ [B, C, H, W]``.
Denoiser = Callable[[Tensor, Tensor, Any], Tensor]

BJD_MODES = ("joint", "mask|image", "image|mask", "both")
BJD_SETTINGS = ("joint", "alternate", "both")


def make_scheduler(kind: str = "ddim", **overrides: Any) -> DDPMScheduler | DDIMScheduler:
    """A diffusers scheduler with the official CGR schedule: ``kind="ddpm"`` for training (``add_noise``),
    ``"ddim"`` for sampling (η = 0 by default, ᾱ at the last step set to one). ``overrides`` replace entries of
    :data:`OFFICIAL_SCHEDULE` (e.g. ``num_train_timesteps``)."""
    unknown = set(overrides) - set(OFFICIAL_SCHEDULE)
    if unknown:
        raise ValueError(f"make_scheduler: unknown setting(s) {sorted(unknown)}; known: {sorted(OFFICIAL_SCHEDULE)}.")
    config = {**OFFICIAL_SCHEDULE, **overrides}
    if kind == "ddpm":
        return DDPMScheduler(**config)
    if kind == "ddim":
        return DDIMScheduler(**config, set_alpha_to_one=True)
    raise ValueError(f"make_scheduler: kind must be 'ddpm' or 'ddim'; got {kind!r}.")


# ------------------------------------------------------------------------------------------------ masks and images


def encode_mask(labels: Tensor, n_labels: int, mode: str = "global") -> Tensor:
    """Label maps [B, H, W] (integers 0..n_labels−1) → one channel [B, 1, H, W] in [−1, 1].

    ``mode="global"``: the fixed map y ↦ 2y/(n − 1) − 1, so every label has one grey level. ``"per_sample"``: the
    official code's min-max scaling per sample (defect 7 of the spec), kept to show the defect: a slice holding only
    labels {0, 1} maps label 1 to +1, which :func:`decode_mask` reads as the largest label.
    """
    if n_labels < 2:
        raise ValueError(f"encode_mask: n_labels must be ≥ 2; got {n_labels}.")
    if labels.dtype.is_floating_point:
        raise TypeError("encode_mask: labels must be an integer tensor of label indices.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_labels):
        raise ValueError(f"encode_mask: labels must lie in 0..{n_labels - 1}; got {int(labels.min())}.."
                         f"{int(labels.max())}.")
    y = labels.float().unsqueeze(1)
    if mode == "global":
        return 2.0 * y / (n_labels - 1) - 1.0
    if mode == "per_sample":
        lo = y.amin(dim=(1, 2, 3), keepdim=True)
        hi = y.amax(dim=(1, 2, 3), keepdim=True)
        return torch.where(hi > lo, 2.0 * (y - lo) / (hi - lo).clamp_min(1e-12) - 1.0, -torch.ones_like(y))
    raise ValueError(f"encode_mask: mode must be 'global' or 'per_sample'; got {mode!r}.")


def decode_mask(channel: Tensor, n_labels: int) -> Tensor:
    """Inverse of the global :func:`encode_mask`: [B, 1, H, W] (or [B, H, W]) → labels [B, H, W],
    round((c + 1)(n − 1)/2) clamped to 0..n−1 (generated masks are not exactly on the grey levels)."""
    if n_labels < 2:
        raise ValueError(f"decode_mask: n_labels must be ≥ 2; got {n_labels}.")
    c = channel[:, 0] if channel.dim() == 4 else channel
    return torch.round((c.clamp(-1, 1) + 1.0) * (n_labels - 1) / 2.0).long().clamp(0, n_labels - 1)


def decode_image(channels: Tensor) -> Tensor:
    """Generated image channels in [−1, 1] → [0, 1] by the fixed map (x + 1)/2, clamped; not the official per-sample
    min-max, which would stretch every sample's contrast to the full range."""
    return ((channels + 1.0) / 2.0).clamp(0.0, 1.0)


def split_pair(z: Tensor, image_channels: int) -> tuple[Tensor, Tensor]:
    """A joint sample [B, C + 1, H, W] → (image [B, C, H, W], mask channel [B, 1, H, W])."""
    if z.shape[1] != image_channels + 1:
        raise ValueError(f"split_pair: expected {image_channels + 1} channels (image + mask); got {z.shape[1]}.")
    return z[:, :image_channels], z[:, image_channels:]


# ------------------------------------------------------------------------------------------------ conditioning


class TaskPrompts(nn.Module):
    """Learned prompt tokens, one set of ``n_tokens`` × ``dim`` per task (or site): the offline stand-in for the
    CLIP text embedding of the task's prompt. ``forward(ids [B]) -> [B, n_tokens, dim]``."""

    def __init__(self, n_tasks: int, n_tokens: int, dim: int, *, init_std: float = 1.0, trainable: bool = True):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n_tasks, n_tokens, dim) * init_std, requires_grad=trainable)

    @classmethod
    def from_embeddings(cls, embeddings: Tensor, *, trainable: bool = False) -> TaskPrompts:
        """Fixed prompt tokens [K, L, D], e.g. frozen CLIP text embeddings of the official prompts."""
        prompts = cls(*embeddings.shape, trainable=trainable)
        with torch.no_grad():
            prompts.tokens.copy_(embeddings)
        return prompts

    @property
    def n_tasks(self) -> int:
        return self.tokens.shape[0]

    def forward(self, ids: Tensor) -> Tensor:
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_tasks):
            raise ValueError(f"TaskPrompts: task ids must lie in 0..{self.n_tasks - 1}; got {ids.tolist()}.")
        return self.tokens[ids]


class TaskOrientedAdapter(nn.Module):
    """TOA (CGR §2.3): TOA_k(E) = E + γ_k ⊙ MLP_k(E), MLP_k = Linear(D → H) → GELU → Linear(H → D) applied token-wise,
    one (MLP_k, γ_k ∈ R^D) per task, γ_k initialised at ``gamma_init`` (LayerScale): the adapter starts as the
    identity and learns how far to move each task's context. ``forward(tokens [B, L, D], ids [B]) -> [B, L, D]``.

    Its parameters are ordinary submodule parameters, so an optimiser built from the generator's ``parameters()``
    trains them (the official code builds its optimiser from the UNet alone and never trains TOA)."""

    def __init__(self, n_tasks: int, dim: int, hidden: int | None = None, *, gamma_init: float = 1e-4):
        super().__init__()
        hidden = hidden or max(1, dim // 2)
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
                                  for _ in range(n_tasks))
        self.gamma = nn.Parameter(torch.full((n_tasks, dim), float(gamma_init)))

    def forward(self, tokens: Tensor, ids: Tensor) -> Tensor:
        if ids.shape[0] != tokens.shape[0]:
            raise ValueError(f"TaskOrientedAdapter: {tokens.shape[0]} token sets but {ids.shape[0]} task ids.")
        out = tokens.clone()
        for k in ids.unique().tolist():
            if not 0 <= k < len(self.mlps):
                raise ValueError(f"TaskOrientedAdapter: task id {k} outside 0..{len(self.mlps) - 1}.")
            rows = ids == k
            out[rows] = tokens[rows] + self.gamma[k] * self.mlps[k](tokens[rows])
        return out


def unet_denoiser(unet: nn.Module) -> Denoiser:
    """A diffusers UNet as a :data:`Denoiser`: ``UNet2DConditionModel`` takes the context as
    ``encoder_hidden_states`` [B, L, D]; ``UNet2DModel`` takes it as ``class_labels`` (or ignores ``None``)."""
    if isinstance(unet, UNet2DConditionModel):
        return lambda z, t, context: unet(z, t, encoder_hidden_states=context).sample
    if isinstance(unet, UNet2DModel):
        return lambda z, t, context: unet(z, t, class_labels=context).sample
    raise TypeError(f"unet_denoiser: expected a diffusers UNet2DConditionModel or UNet2DModel; got "
                    f"{type(unet).__name__}.")


class PromptedDenoiser(nn.Module):
    """A conditional UNet with its task (or site) conditioning: ``forward(z_t, t, ids)`` looks up the prompt tokens of
    ``ids`` [B], passes them through the adapter when there is one, and predicts ε with the tokens as cross-attention
    context. One module, so one optimiser over ``parameters()`` trains UNet, prompts and adapter together.

    ``skip_alphas_cumprod`` (ᾱ per training timestep) adds an input skip, ε̂ = √(1 − ᾱ_t)·z_t + UNet(z_t, t, c): the
    best linear guess of ε for unit-variance data, so the network learns only a correction. Not in the official
    model: a small network trained briefly predicts the near-identity ε ≈ z_t of the noisiest steps badly, and DDIM
    amplifies that error by 1/√ᾱ_t into washed-out samples. Channels marked ``clean`` [C] (given exactly, as in
    BJD's conditional branches and conditional sampling; their ε is 0) get no skip."""

    #: :func:`bjd_loss` and :func:`ddim_sample` tell this denoiser which channels are clean
    accepts_clean = True

    def __init__(self, unet: UNet2DConditionModel, prompts: TaskPrompts, adapter: TaskOrientedAdapter | None = None,
                 skip_alphas_cumprod: Tensor | None = None):
        super().__init__()
        self.unet, self.prompts, self.adapter = unet, prompts, adapter
        skip = None if skip_alphas_cumprod is None else (1.0 - skip_alphas_cumprod.float()).sqrt()
        self.register_buffer("skip_scale", skip, persistent=False)

    def context(self, ids: Tensor) -> Tensor:
        tokens = self.prompts(ids)
        return tokens if self.adapter is None else self.adapter(tokens, ids)

    def forward(self, z: Tensor, t: Tensor, ids: Tensor, clean: Tensor | None = None) -> Tensor:
        eps = self.unet(z, t, encoder_hidden_states=self.context(ids)).sample
        if self.skip_scale is None:
            return eps
        scale = self.skip_scale[torch.as_tensor(t, device=z.device).long()]
        scale = scale.reshape(-1, 1, 1, 1) if scale.dim() else scale
        noisy = z if clean is None else z * (~clean.to(z.device)).to(z.dtype).reshape(1, -1, 1, 1)
        return eps + scale * noisy


def conditional_unet(size: int, channels: int, widths: Sequence[int], *, layers: int = 1, attention_levels: int = 1,
                     context_dim: int = 32, head_dim: int = 8) -> UNet2DConditionModel:
    """A ``UNet2DConditionModel`` of ``channels`` in and out, ``widths[i]`` channels at level i and cross-attention to a
    ``context_dim``-wide context at the ``attention_levels`` coarsest levels (the cheapest placement first)."""
    widths = tuple(widths)
    levels = len(widths)
    if not 1 <= attention_levels <= levels:
        raise ValueError(f"attention_levels must lie in 1..{levels} (the levels of widths {widths}); got "
                         f"{attention_levels}.")
    plain = levels - attention_levels
    return UNet2DConditionModel(
        sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=widths,
        layers_per_block=layers,
        down_block_types=("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * attention_levels,
        up_block_types=("CrossAttnUpBlock2D",) * attention_levels + ("UpBlock2D",) * plain,
        cross_attention_dim=context_dim,
        # diffusers reads `attention_head_dim` as the number of heads (a known misnomer): heads = width / head width
        attention_head_dim=tuple(max(1, w // head_dim) for w in widths),
        norm_num_groups=min(32, widths[0] // 2))


# ------------------------------------------------------------------------------------------------ training loss


def _denoise(denoiser: Denoiser, z: Tensor, t: Tensor, context: Any, clean: Tensor | None = None) -> Tensor:
    """ε̂ from ``denoiser``, telling it which channels are clean [C] when it accepts that (see PromptedDenoiser)."""
    if clean is not None and getattr(denoiser, "accepts_clean", False):
        return denoiser(z, t, context, clean=clean)
    return denoiser(z, t, context)


def _loss(prediction: Tensor, target: Tensor, kind: str) -> Tensor:
    if kind == "l1":
        return F.l1_loss(prediction, target)
    if kind == "mse":
        return F.mse_loss(prediction, target)
    raise ValueError(f"loss must be 'l1' (official) or 'mse'; got {kind!r}.")


def denoising_loss(denoiser: Denoiser, x0: Tensor, t: Tensor, noise: Tensor, context: Any = None, *,
                   scheduler: DDPMScheduler | None = None, loss: str = "l1") -> Tensor:
    """The DDPM ε-prediction loss ‖ε − ε_θ(√ᾱ_t x₀ + √(1 − ᾱ_t) ε, t, c)‖ on x₀ [B, C, H, W] alone (an image-only
    generator, as SMG-Learning's site-modulated diffusion): :func:`bjd_loss`'s joint term without a mask channel."""
    scheduler = scheduler or make_scheduler("ddpm")
    return _loss(_denoise(denoiser, scheduler.add_noise(x0, noise, t), t, context), noise, loss)


def bjd_mode_at(setting: str, step: int) -> str:
    """The BJD mode of training step ``step``: ``"alternate"`` (official) gives p(y|x) on even steps and p(x|y) on
    odd ones; ``"both"`` uses both every step; ``"joint"`` only the joint term (plain joint diffusion)."""
    if setting == "alternate":
        return "mask|image" if step % 2 == 0 else "image|mask"
    if setting in ("both", "joint"):
        return setting
    raise ValueError(f"bjd setting must be one of {BJD_SETTINGS}; got {setting!r}.")


def bjd_loss(denoiser: Denoiser, image: Tensor, mask: Tensor, t: Tensor, noise: Tensor, context: Any = None,
             mode: str = "joint", *, scheduler: DDPMScheduler | None = None, loss: str = "l1",
             split: bool = False) -> dict[str, Tensor]:
    """Bayesian joint diffusion loss for one batch.

    image [B, C, H, W] and mask [B, 1, H, W] in [−1, 1]; t [B] integer timesteps; noise [B, C + 1, H, W] ~ N(0, I).
    z_0 = [x; y], z_t = √ᾱ_t z_0 + √(1 − ᾱ_t) ε (the scheduler's ``add_noise``).

    * joint: ‖ε − ε_θ(z_t, t)‖ (L1 by default, as in the official code);
    * ``mode="mask|image"``, p(y|x): input [x_0; y_t], target [0; ε_y];
    * ``mode="image|mask"``, p(x|y): input [x_t; y_0], target [ε_x; 0];
    * ``mode="both"``: the mean of the two conditional terms.

    The conditional terms reuse the joint term's t and noise. ``split=True`` (not official) computes the joint term
    on the first half of the batch and the conditional terms on the second, so a step of BJD costs what a step of
    plain joint diffusion costs. Returns ``{"joint", "cond", "total"}`` with total = joint + cond (cond is 0 for
    ``mode="joint"``).
    """
    if mode not in BJD_MODES:
        raise ValueError(f"bjd_loss: mode must be one of {BJD_MODES}; got {mode!r}.")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"bjd_loss: mask must be [B, 1, H, W] (see encode_mask); got {tuple(mask.shape)}.")
    if image.shape[0] != mask.shape[0] or image.shape[2:] != mask.shape[2:]:
        raise ValueError(f"bjd_loss: image {tuple(image.shape)} and mask {tuple(mask.shape)} do not match.")
    z0 = torch.cat([image, mask], dim=1)
    if noise.shape != z0.shape:
        raise ValueError(f"bjd_loss: noise must have the joint shape {tuple(z0.shape)}; got {tuple(noise.shape)}.")
    scheduler = scheduler or make_scheduler("ddpm")
    c = image.shape[1]
    zt = scheduler.add_noise(z0, noise, t)
    joint_rows = cond_rows = slice(None)
    if split and mode != "joint":
        if z0.shape[0] < 2:
            raise ValueError("bjd_loss: split=True needs a batch of at least 2.")
        half = z0.shape[0] // 2
        joint_rows, cond_rows = slice(0, half), slice(half, None)
    joint = _loss(denoiser(zt[joint_rows], t[joint_rows], _rows(context, joint_rows)), noise[joint_rows], loss)
    # the conditional branch sees its own rows only
    image, mask, zt, noise, t = image[cond_rows], mask[cond_rows], zt[cond_rows], noise[cond_rows], t[cond_rows]
    context = _rows(context, cond_rows)
    terms = []
    image_clean = torch.arange(c + 1, device=image.device) < c  # [C + 1]: the image channels are the clean ones
    if mode in ("mask|image", "both"):
        given_image = torch.cat([image, zt[:, c:]], dim=1)
        target = torch.cat([torch.zeros_like(image), noise[:, c:]], dim=1)
        terms.append(_loss(_denoise(denoiser, given_image, t, context, image_clean), target, loss))
    if mode in ("image|mask", "both"):
        given_mask = torch.cat([zt[:, :c], mask], dim=1)
        target = torch.cat([noise[:, :c], torch.zeros_like(mask)], dim=1)
        terms.append(_loss(_denoise(denoiser, given_mask, t, context, ~image_clean), target, loss))
    cond = torch.stack(terms).mean() if terms else joint.new_zeros(())
    return {"joint": joint, "cond": cond, "total": joint + cond}


# ------------------------------------------------------------------------------------------------ sampling


def _rows(value: Any, rows: slice) -> Any:
    """Rows of a batched context (tensor or tuple/list of tensors); anything else is passed whole."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return value[rows]
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, rows) for v in value)
    return value


@torch.no_grad()
def ddim_sample(denoiser: Denoiser, x_T: Tensor, num_steps: int, context: Any = None,
                scheduler: DDIMScheduler | None = None, fixed: Tensor | None = None,
                fixed_channels: Sequence[int] | None = None, *, eta: float = 0.0, batch_size: int | None = None,
                show_progress: bool | None = None, generator: torch.Generator | None = None) -> Tensor:
    """DDIM sampling from x_T [B, C, H, W] in ``num_steps`` steps (diffusers' ``DDIMScheduler.step``).

    ``context`` is passed to the denoiser (a tensor or tuple of tensors with B rows is split with the batch).
    ``fixed`` [B, len(fixed_channels), H, W] clamps ``fixed_channels`` to known clean values before every step and in
    the result: conditional sampling, e.g. a mask given an image (the p(y|x) branch BJD trains) or an image given a
    mask. ``batch_size`` splits the work into chunks of that many samples. A progress bar shows when there is more
    than a few seconds of work (``show_progress`` forces it on or off).
    """
    if num_steps < 1:
        raise ValueError(f"ddim_sample: num_steps must be ≥ 1; got {num_steps}.")
    if (fixed is None) != (fixed_channels is None):
        raise ValueError("ddim_sample: give both `fixed` and `fixed_channels`, or neither.")
    channels = list(fixed_channels) if fixed_channels is not None else []
    if fixed is not None:
        want = (x_T.shape[0], len(channels), *x_T.shape[2:])
        if tuple(fixed.shape) != want:
            raise ValueError(f"ddim_sample: `fixed` must have shape {want} (one plane per fixed channel); got "
                             f"{tuple(fixed.shape)}.")
        if not all(0 <= ch < x_T.shape[1] for ch in channels):
            raise ValueError(f"ddim_sample: fixed_channels {channels} outside 0..{x_T.shape[1] - 1}.")
    scheduler = scheduler or make_scheduler("ddim")
    scheduler.set_timesteps(num_steps)
    timesteps = scheduler.timesteps
    size = batch_size or x_T.shape[0]
    chunks = [slice(i, min(i + size, x_T.shape[0])) for i in range(0, x_T.shape[0], size)]
    if show_progress is None:
        show_progress = len(chunks) * len(timesteps) * x_T.shape[2] * x_T.shape[3] * size > 200 * 20 * 32 * 32 * 64
    bar = progress(total=len(chunks) * len(timesteps), desc="DDIM sampling", disable=not show_progress)
    clean = None
    if fixed is not None:
        clean = torch.zeros(x_T.shape[1], dtype=torch.bool, device=x_T.device)
        clean[channels] = True
    out = []
    for rows in chunks:
        z = x_T[rows].clone()
        ctx = _rows(context, rows)
        known = fixed[rows] if fixed is not None else None
        for t in timesteps:
            if known is not None:
                z[:, channels] = known
            eps = _denoise(denoiser, z, t, ctx, clean)
            z = scheduler.step(eps, t, z, eta=eta, generator=generator).prev_sample
            bar.update(1)
        if known is not None:
            z[:, channels] = known
        out.append(z)
    bar.close()
    return torch.cat(out)


def sample_pairs(denoiser: Denoiser, ids: Tensor, image_channels: int, size: int, num_steps: int, *,
                 generator: torch.Generator, scheduler: DDIMScheduler | None = None,
                 batch_size: int = 128, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Unconditional joint samples for the task (or site) ``ids`` [N]: x_T ~ N(0, I) of [N, C + 1, size, size] from
    ``generator``, DDIM with the ids as context. Returns (images [N, C, H, W] in [−1, 1], mask channels [N, 1, H, W])
    — decode the masks with the task's own label count (:func:`decode_mask`). The noise is drawn on the CPU (the same
    samples on any device) and the sampling runs on ``device``."""
    x_T = torch.randn(len(ids), image_channels + 1, size, size, generator=generator).to(device)
    z = ddim_sample(denoiser, x_T, num_steps, context=ids.to(device), scheduler=scheduler, batch_size=batch_size)
    image, mask = split_pair(z, image_channels)
    return image.clamp(-1, 1), mask


def sample_images(denoiser: Denoiser, ids: Tensor, channels: int, size: int, num_steps: int, *,
                  generator: torch.Generator, scheduler: DDIMScheduler | None = None, batch_size: int = 128,
                  device: torch.device | str = "cpu") -> Tensor:
    """Images [N, channels, size, size] in [−1, 1] of the sites (or tasks) ``ids`` [N] from an image-only generator:
    x_T ~ N(0, I) drawn on the CPU from ``generator``, DDIM on ``device`` with the ids as context."""
    x_T = torch.randn(len(ids), channels, size, size, generator=generator).to(device)
    z = ddim_sample(denoiser, x_T, num_steps, context=ids.to(device), scheduler=scheduler, batch_size=batch_size)
    return z.clamp(-1, 1).cpu()

