"""The diffusion replay kernel (replbook.replay) against hand-worked cases from the equations (spec cgr.md §6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from replbook import replay


def test_schedule_matches_hand_values():
    ddpm = replay.make_scheduler("ddpm")
    assert ddpm.betas[0].item() == pytest.approx(0.0015, abs=1e-9)
    assert ddpm.betas[999].item() == pytest.approx(0.0205, abs=1e-9)
    # scaled linear: β_t = (√0.0015 + t/999 (√0.0205 − √0.0015))²
    t = 400
    beta = (math.sqrt(0.0015) + t / 999 * (math.sqrt(0.0205) - math.sqrt(0.0015))) ** 2
    assert ddpm.betas[t].item() == pytest.approx(beta, rel=1e-5)
    assert ddpm.alphas_cumprod[0].item() == pytest.approx(0.9985, abs=1e-7)
    # noising at t = 0 uses √ᾱ_0 = 0.99925 and √(1 − ᾱ_0) = 0.03873
    z0, eps = torch.ones(1, 2, 1, 1), torch.full((1, 2, 1, 1), 2.0)
    zt = ddpm.add_noise(z0, eps, torch.tensor([0]))
    assert zt[0, 0, 0, 0].item() == pytest.approx(0.99925 + 2 * 0.03873, abs=2e-5)


@pytest.mark.parametrize("n, expected", [(20, list(range(950, -1, -50))), (25, list(range(960, -1, -40))),
                                         (100, list(range(990, -1, -10)))])
def test_ddim_leading_timesteps(n, expected):
    ddim = replay.make_scheduler("ddim")
    ddim.set_timesteps(n)
    assert ddim.timesteps.tolist() == expected


def test_make_scheduler_rejects_unknown():
    with pytest.raises(ValueError, match="kind"):
        replay.make_scheduler("pndm")
    with pytest.raises(ValueError, match="beta_stop"):
        replay.make_scheduler("ddim", beta_stop=0.02)


def _hand_ddim(x: np.ndarray, c: float, n: int) -> np.ndarray:
    """DDIM (η = 0) written from the equations in float64: x̂₀ = (x − √(1−ᾱ_t) ε)/√ᾱ_t clipped to [−1, 1],
    x_prev = √ᾱ_prev x̂₀ + √(1−ᾱ_prev) ε, ᾱ_prev = 1 after the last step; the analytic denoiser ε = c·x."""
    betas = np.linspace(math.sqrt(0.0015), math.sqrt(0.0205), 1000) ** 2
    abar = np.cumprod(1 - betas)
    ratio = 1000 // n
    for t in range(ratio * (n - 1), -1, -ratio):
        eps = c * x
        x0 = np.clip((x - math.sqrt(1 - abar[t]) * eps) / math.sqrt(abar[t]), -1, 1)
        prev = abar[t - ratio] if t - ratio >= 0 else 1.0
        x = math.sqrt(prev) * x0 + math.sqrt(1 - prev) * eps
    return x


@pytest.mark.parametrize("c", [0.3, 0.9])
def test_ddim_sample_matches_hand_computation(c):
    x_T = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    out = replay.ddim_sample(lambda z, t, ctx: c * z, x_T, 10)
    expected = _hand_ddim(x_T.double().numpy(), c, 10)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_ddim_sample_batches_and_context_split():
    x_T = torch.randn(5, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    scale = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    seen = []

    def denoiser(z, t, ctx):
        seen.append(len(ctx))
        return ctx[:, None, None, None] * z

    whole = replay.ddim_sample(denoiser, x_T, 4, context=scale)
    chunked = replay.ddim_sample(denoiser, x_T, 4, context=scale, batch_size=2)
    torch.testing.assert_close(whole, chunked)
    assert set(seen[4:]) == {2, 1}


def test_conditional_sampling_keeps_fixed_channels_exactly():
    g = torch.Generator().manual_seed(2)
    x_T = torch.randn(4, 2, 5, 5, generator=g)
    known = torch.rand(4, 1, 5, 5, generator=g) * 2 - 1
    seen_fixed = []

    def denoiser(z, t, ctx):
        seen_fixed.append(torch.equal(z[:, :1], known))
        return 0.5 * z + 0.3 * z.mean(1, keepdim=True)  # mixes channels

    out = replay.ddim_sample(denoiser, x_T, 6, fixed=known, fixed_channels=[0])
    assert torch.equal(out[:, :1], known)
    assert all(seen_fixed)  # the denoiser saw the clean known channel at every step
    free = replay.ddim_sample(lambda z, t, ctx: 0.5 * z + 0.3 * z.mean(1, keepdim=True), x_T, 6)
    assert not torch.allclose(out[:, 1:], free[:, 1:])  # the free channel depends on the fixed one through z


def test_ddim_sample_errors_name_the_argument():
    x_T = torch.zeros(2, 2, 3, 3)
    with pytest.raises(ValueError, match="fixed_channels"):
        replay.ddim_sample(lambda z, t, c: z, x_T, 2, fixed=torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="shape"):
        replay.ddim_sample(lambda z, t, c: z, x_T, 2, fixed=torch.zeros(2, 2, 3, 3), fixed_channels=[1])
    with pytest.raises(ValueError, match="num_steps"):
        replay.ddim_sample(lambda z, t, c: z, x_T, 0)


def test_mask_encoding_global_and_the_per_sample_defect():
    labels = torch.tensor([[[0, 1], [2, 3]]])
    enc = replay.encode_mask(labels, 4)
    torch.testing.assert_close(enc[0, 0], torch.tensor([[-1.0, -1 / 3], [1 / 3, 1.0]]))
    assert torch.equal(replay.decode_mask(enc, 4), labels)
    # generated values off the grey levels round to the nearest label and clamp
    assert replay.decode_mask(torch.tensor([[[[-1.4, -0.1], [0.2, 1.7]]]]), 4).tolist() == [[[0, 1], [2, 3]]]
    # defect 7: a slice with only {bg, LV} under per-sample min-max maps LV to +1, decoded as RV (3)
    only_lv = torch.tensor([[[0, 1], [1, 0]]])
    assert replay.decode_mask(replay.encode_mask(only_lv, 4, mode="per_sample"), 4).tolist() == [[[0, 3], [3, 0]]]
    assert torch.equal(replay.decode_mask(replay.encode_mask(only_lv, 4), 4), only_lv)


def test_mask_encoding_errors():
    with pytest.raises(ValueError, match="0..3"):
        replay.encode_mask(torch.tensor([[[4]]]), 4)
    with pytest.raises(TypeError, match="integer"):
        replay.encode_mask(torch.zeros(1, 2, 2), 4)
    with pytest.raises(ValueError, match="mode"):
        replay.encode_mask(torch.zeros(1, 2, 2, dtype=torch.long), 4, mode="minmax")


def test_decode_image_and_split_pair():
    z = torch.tensor([[[[-1.5, 0.0]], [[0.3, 0.4]]]])
    image, mask = replay.split_pair(z, 1)
    torch.testing.assert_close(replay.decode_image(image), torch.tensor([[[[0.0, 0.5]]]]))
    assert mask.shape == (1, 1, 1, 2)
    with pytest.raises(ValueError, match="channels"):
        replay.split_pair(z, 3)


def _recording_denoiser(calls):
    def denoiser(z, t, ctx):
        calls.append(z.clone())
        return torch.zeros_like(z)
    return denoiser


@pytest.mark.parametrize("mode", replay.BJD_MODES)
def test_bjd_loss_inputs_and_targets(mode):
    """With ε̂ = 0 every L1 term equals the mean |target|: the zero blocks of the conditional targets show up as a
    smaller loss, and the recorded inputs show which half is clean."""
    g = torch.Generator().manual_seed(3)
    image, mask = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    noise, t = torch.randn(2, 4, 4, 4, generator=g), torch.tensor([10, 500])
    sched = replay.make_scheduler("ddpm")
    calls = []
    out = replay.bjd_loss(_recording_denoiser(calls), image, mask, t, noise, mode=mode, scheduler=sched)
    zt = sched.add_noise(torch.cat([image, mask], 1), noise, t)
    torch.testing.assert_close(calls[0], zt)
    torch.testing.assert_close(out["joint"], noise.abs().mean())
    y_given_x = torch.cat([torch.zeros_like(image), noise[:, 3:]], 1).abs().mean()  # target [0₃; ε_y]
    x_given_y = torch.cat([noise[:, :3], torch.zeros_like(mask)], 1).abs().mean()   # target [ε_x; 0₁]
    expected = {"joint": 0.0, "mask|image": y_given_x, "image|mask": x_given_y,
                "both": (y_given_x + x_given_y) / 2}[mode]
    torch.testing.assert_close(out["cond"], torch.as_tensor(expected, dtype=torch.float32))
    torch.testing.assert_close(out["total"], out["joint"] + out["cond"])
    if mode in ("mask|image", "both"):
        torch.testing.assert_close(calls[1][:, :3], image)       # clean image
        torch.testing.assert_close(calls[1][:, 3:], zt[:, 3:])   # noisy mask, same t and noise
    if mode == "image|mask":
        torch.testing.assert_close(calls[1][:, :3], zt[:, :3])
        torch.testing.assert_close(calls[1][:, 3:], mask)
    assert len(calls) == {"joint": 1, "mask|image": 2, "image|mask": 2, "both": 3}[mode]


def test_bjd_mode_schedule_and_errors():
    assert [replay.bjd_mode_at("alternate", s) for s in range(3)] == ["mask|image", "image|mask", "mask|image"]
    assert replay.bjd_mode_at("joint", 5) == "joint"
    with pytest.raises(ValueError, match="bjd setting"):
        replay.bjd_mode_at("sometimes", 0)
    image, mask = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="noise"):
        replay.bjd_loss(lambda z, t, c: z, image, mask, torch.tensor([1, 2]), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="loss"):
        replay.bjd_loss(lambda z, t, c: z, image, mask, torch.tensor([1, 2]), torch.zeros(2, 2, 4, 4), loss="l2")
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        replay.bjd_loss(lambda z, t, c: z, image, mask[:, 0], torch.tensor([1, 2]), torch.zeros(2, 2, 4, 4))


def test_toa_worked_example_and_identity_at_init():
    toa = replay.TaskOrientedAdapter(n_tasks=2, dim=2, hidden=3)
    with torch.no_grad():
        last = toa.mlps[1][2]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([100.0, -50.0]))
    out = toa(torch.zeros(1, 1, 2), torch.tensor([1]))
    torch.testing.assert_close(out[0, 0], torch.tensor([0.01, -0.005]))
    tokens = torch.randn(4, 3, 2)
    near = toa(tokens, torch.tensor([0, 0, 0, 0]))
    assert (near - tokens).abs().max() < 1e-3
    with pytest.raises(ValueError, match="task id 2"):
        toa(tokens, torch.tensor([0, 1, 2, 0]))


def _tiny_conditional_unet(channels: int = 2) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, in_channels=channels, out_channels=channels,
                                block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=4, norm_num_groups=4)


def test_prompted_denoiser_trains_prompts_and_toa():
    """One optimiser over the module's parameters reaches the UNet, the prompts and the adapter's γ (the official
    code's optimiser never saw the adapter)."""
    model = replay.PromptedDenoiser(_tiny_conditional_unet(), replay.TaskPrompts(3, 2, 8),
                                    replay.TaskOrientedAdapter(3, 8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    image, mask = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    loss = replay.bjd_loss(model, image, mask, torch.tensor([5, 100, 300, 900]), torch.randn(4, 2, 8, 8, generator=g),
                           torch.tensor([0, 1, 1, 0]), mode="both")["total"]
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "adapter.gamma" in changed and "prompts.tokens" in changed
    assert any(n.startswith("adapter.mlps.1") for n in changed)
    assert not any(n.startswith("adapter.mlps.2") for n in changed)  # task 2 had no samples
    with pytest.raises(ValueError, match="task ids"):
        model.context(torch.tensor([3]))


def test_unet_denoiser_and_sample_pairs():
    unet = _tiny_conditional_unet()
    ctx = torch.randn(2, 2, 8)
    z = torch.randn(2, 2, 8, 8)
    torch.testing.assert_close(replay.unet_denoiser(unet)(z, torch.tensor(10), ctx),
                               unet(z, 10, encoder_hidden_states=ctx).sample)
    plain = UNet2DModel(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 8), layers_per_block=1,
                        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                        norm_num_groups=4)
    assert replay.unet_denoiser(plain)(z, torch.tensor(3), None).shape == z.shape
    with pytest.raises(TypeError, match="UNet2DConditionModel"):
        replay.unet_denoiser(torch.nn.Linear(2, 2))
    model = replay.PromptedDenoiser(unet, replay.TaskPrompts(2, 2, 8))
    image, mask = replay.sample_pairs(model, torch.tensor([0, 1, 1]), 1, 8, 3,
                                      generator=torch.Generator().manual_seed(0), batch_size=2)
    assert image.shape == mask.shape == (3, 1, 8, 8)
    assert image.abs().max() <= 1
    again, _ = replay.sample_pairs(model, torch.tensor([0, 1, 1]), 1, 8, 3,
                                   generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(image, again)


def test_bjd_loss_split_puts_joint_and_conditional_on_halves():
    g = torch.Generator().manual_seed(4)
    image, mask = torch.rand(4, 1, 3, 3, generator=g), torch.rand(4, 1, 3, 3, generator=g)
    noise, t = torch.randn(4, 2, 3, 3, generator=g), torch.tensor([1, 2, 3, 4])
    sched = replay.make_scheduler("ddpm")
    calls, contexts = [], []

    def denoiser(z, tt, ctx):
        calls.append((z.clone(), tt.clone()))
        contexts.append(ctx.clone())
        return torch.zeros_like(z)

    out = replay.bjd_loss(denoiser, image, mask, t, noise, torch.arange(4), "mask|image", scheduler=sched, split=True)
    zt = sched.add_noise(torch.cat([image, mask], 1), noise, t)
    torch.testing.assert_close(calls[0][0], zt[:2])
    assert calls[0][1].tolist() == [1, 2] and contexts[0].tolist() == [0, 1]
    torch.testing.assert_close(calls[1][0][:, :1], image[2:])
    assert calls[1][1].tolist() == [3, 4] and contexts[1].tolist() == [2, 3]
    torch.testing.assert_close(out["joint"], noise[:2].abs().mean())
    torch.testing.assert_close(out["cond"], torch.cat([torch.zeros(2, 1, 3, 3), noise[2:, 1:]], 1).abs().mean())


def test_input_skip_spares_the_clean_channels():
    """ε̂ = √(1 − ᾱ_t)·z + UNet: the skip applies to noised channels only; bjd_loss's conditional branches and
    conditional sampling mark the clean ones."""
    unet = _tiny_conditional_unet()
    alphas = replay.make_scheduler("ddpm").alphas_cumprod
    plain = replay.PromptedDenoiser(unet, replay.TaskPrompts(2, 2, 8))
    skip = replay.PromptedDenoiser(unet, replay.TaskPrompts(2, 2, 8), skip_alphas_cumprod=alphas)
    skip.prompts.load_state_dict(plain.prompts.state_dict())
    z, ids, t = torch.randn(2, 2, 8, 8), torch.tensor([0, 1]), torch.tensor([100, 900])
    scale = (1 - alphas[t]).sqrt().reshape(-1, 1, 1, 1)
    with torch.no_grad():
        base = plain(z, t, ids)
        torch.testing.assert_close(skip(z, t, ids), base + scale * z)
        clean = torch.tensor([True, False])
        out = skip(z, t, ids, clean=clean)
        torch.testing.assert_close(out[:, :1], base[:, :1])
        torch.testing.assert_close(out[:, 1:], base[:, 1:] + scale * z[:, 1:])
    seen = []

    class Spy(torch.nn.Module):
        accepts_clean = True

        def forward(self, z, t, ctx, clean=None):
            seen.append(None if clean is None else clean.tolist())
            return torch.zeros_like(z)

    replay.bjd_loss(Spy(), torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.tensor([1, 2]),
                    torch.zeros(2, 2, 4, 4), mode="both")
    assert seen == [None, [True, False], [False, True]]
    seen.clear()
    replay.ddim_sample(Spy(), torch.zeros(1, 2, 4, 4), 2, fixed=torch.zeros(1, 1, 4, 4), fixed_channels=[1])
    assert seen == [[False, True]] * 2


def test_conditional_unet_places_attention_on_the_coarsest_levels():
    unet = replay.conditional_unet(8, 1, (8, 8, 16), attention_levels=2, context_dim=8, head_dim=4)
    assert unet.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert unet.config.up_block_types == ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    assert unet.config.in_channels == unet.config.out_channels == 1
    with pytest.raises(ValueError, match="attention_levels must lie in 1..3"):
        replay.conditional_unet(8, 1, (8, 8, 16), attention_levels=4)


def test_denoising_loss_is_the_eps_error_of_the_noised_input():
    sched = replay.make_scheduler("ddpm")
    x0, noise, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.tensor([0, 500, 999])
    seen = {}

    def denoiser(z, t_, ctx):  # predicts 0 and records its input
        seen["z"] = z
        return torch.zeros_like(z)

    loss = replay.denoising_loss(denoiser, x0, t, noise, None, scheduler=sched, loss="l1")
    assert loss.item() == pytest.approx(noise.abs().mean().item())
    a = sched.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(seen["z"], a.sqrt() * x0 + (1 - a).sqrt() * noise)
    mse = replay.denoising_loss(denoiser, x0, t, noise, None, scheduler=sched, loss="mse")
    assert mse.item() == pytest.approx((noise ** 2).mean().item())


def test_sample_images_are_seeded_and_bounded():
    model = replay.PromptedDenoiser(_tiny_conditional_unet(channels=1), replay.TaskPrompts(2, 2, 8))
    images = replay.sample_images(model, torch.tensor([0, 1, 1]), 1, 8, 3,
                                  generator=torch.Generator().manual_seed(0), batch_size=2)
    assert images.shape == (3, 1, 8, 8) and images.abs().max() <= 1
    again = replay.sample_images(model, torch.tensor([0, 1, 1]), 1, 8, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(images, again)
