"""The LoBAM chapter's tables, figures and claims, from :class:`~.common.LobamResults`.

Every claim reads paired differences over seeds (Student-t 95% intervals): the seeds share θ_pre, the tasks and the
test images, and each seed's uploads share its benign users, trigger and LoRA initialisation.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from replbook.experiments.lobam.common import (
    CLEAN,
    FULL_FT,
    LOBAM_NAME,
    NAIVE,
    SCALED,
    SCALED_LAM,
    SCHEMES,
    SELECTED,
    LobamResults,
    SeedResult,
)
from replbook.intervals import Interval, paired_t
from replbook.page import mean_sd
from replbook.verdicts import (
    Claim,
    ClaimSheet,
    Premise,
    Verdict,
    apply_premises,
    judge_all,
    judge_conjunction,
    judge_effect,
    judge_noninferior,
    premise,
)

SOURCE_ABS = "abstract [abs]; unverified against the PDF, tables not transcribed"
SOURCE_SUMMARY = "a public overview of v4 [summary]; unverified against the PDF, tables not transcribed"
CLAIMS = {
    "C1": ("LoRA weakens the attack: the naive LoRA upload's merged backdoor (ASR − clean target rate) is well below "
           "full fine-tuning's",
           "BadMerging's ASR drops from > 98% to ≈ 30–58% with LoRA", SOURCE_SUMMARY),
    "C2": ("LoBAM (λ by the stealth rule) restores a strong merged backdoor (ASR − clean target rate): ≥ 0.9, no "
           "worse than full FT − 0.05, and well above the naive LoRA attack",
           "> 98% ASR across merging schemes (CIFAR100 and ImageNet100 as the attacker's task, CLIP ViT-B/32)",
           SOURCE_ABS),
    "C3": ("Stealthy merge: the merged model's clean accuracy (mean over tasks) within 3 points of the clean merge",
           "merged clean accuracy close to the clean merge", SOURCE_ABS),
    "C3b": ("Stealthy amplification: the stealth rule finds a λ > 1, and that upload's own clean accuracy on the "
            "attacker's task stays within 3 points of θ_ben's",
            "λ chosen to balance effectiveness and stealthiness",
            "public summaries [summary]; the rule's form reconstructed (spec §2.6) [recon]"),
    "C4": ("The merged model's backdoor (ASR minus its clean target rate) does not fall as λ grows (the theorem's "
           "consequence)",
           "Theorem (section 4): backdoor loss falls monotonically in λ", "section 4 [recon]; not transcribed"),
}
#: The effect sizes the directional rules use: a drop of at least 0.40 (the paper's > 0.98 to at most ≈ 0.58) and
#: the same size back. The level, the margins (ASR, clean accuracy) are ours (the spec's §5.3 suggestions), not the
#: paper's; so are C4's rise (one margin) and C3b's amplification (the sweep's smallest step above λ = 1, 1.5).
EFFECT_DROP, ASR_LEVEL, MARGIN_ASR, MARGIN_CA = 0.40, 0.90, 0.05, 0.03
EFFECT_RISE, EFFECT_LAMBDA = 0.05, 0.5
#: The premises' bounds (issue 30): R2 the reference attack's trigger_gain under task arithmetic, R3 a benign LoRA
#: user's own clean accuracy below full fine-tuning's, R4 the clean merge's share of the fine-tuned gain over chance.
REFERENCE_GAIN, BENIGN_MARGIN, MERGE_USEFUL = 0.5, 0.02, 0.5
#: Classes per task, for chance (R4): the miniature's Fashion-MNIST and digits tasks have ten, the paper's sets their
#: standard counts (the results do not store them; issue 30 does).
N_CLASSES = {"fashion": 10, "fashion-rot90": 10, "fashion-inverted": 10, "fashion-flipped": 10, "digits": 10,
             "cifar100": 100, "gtsrb": 43, "eurosat": 10, "cars": 196, "sun397": 397, "pets": 37}
#: The paper's per-table numbers, to be copied from arXiv 2411.16746v4 (spec §4): None until someone checks the PDF.
PAPER_NUMBERS: dict[str, float | None] = {
    "main results table (section 5), CIFAR100 on-task, ViT-B/32, task arithmetic: ASR of LoBAM": None,
    "main results table (section 5), CIFAR100 on-task, ViT-B/32, TIES: ASR of LoBAM": None,
    "main results table (section 5), BadMerging with LoRA, task arithmetic: ASR": None,
    "main results table (section 5), merged clean accuracy, LoBAM vs clean merge": None,
    "ablation (section 5), ASR against λ": None,
    "ablation (section 5), ASR against LoRA rank": None,
    "defence table (section 5): detection rate of each defence": None,
}


# ------------------------------------------------------------------------------------------------ reading results


def _values(results: list[SeedResult], upload: str, what: str, scheme: str | None = None) -> np.ndarray:
    """Per seed: ``what`` of ``upload``. Under a merging ``scheme``: "asr", "target_rate" (clean non-target images
    classified as the target), "asr_random" (a random patch's ASR), "backdoor" (asr − target_rate: what the trigger
    adds to a clean image), "trigger_gain" (asr − asr_random: what this trigger adds over any corner patch) or "ca"
    (mean over tasks) of the merged model; without one: the upload's own entries ("own_ca", "own_asr", "norm",
    "cos_benign", "lam")."""
    out = []
    for r in results:
        entry = r.uploads[upload]
        if scheme is None:
            out.append(entry[what])
            continue
        merged = entry["merged"][scheme]
        if what == "ca":
            out.append(float(np.mean(list(merged["ca"].values()))))
        elif what == "backdoor":
            out.append(merged["asr"] - merged["target_rate"])
        elif what == "trigger_gain":
            out.append(merged["asr"] - merged["asr_random"])
        else:
            out.append(merged[what])
    return np.asarray(out, dtype=float)


def _sweep(results: list[SeedResult]) -> list[str]:
    """The λ-sweep uploads in order of λ (λ = 1 first)."""
    names = [n for n in results[0].uploads if n not in (CLEAN, FULL_FT, SELECTED, SCALED)]
    return sorted(names, key=lambda n: results[0].uploads[n]["lam"])


def upload_table(results: LobamResults) -> pd.DataFrame:
    """One row per upload: λ, the upload's own clean accuracy and ASR, ‖τ‖ and its cosine to the benign users' τ,
    and each merged model's ASR and mean clean accuracy; mean ± sd over seeds."""
    seeds = results.main
    rows = []
    for name in [CLEAN, FULL_FT, *_sweep(seeds), SCALED, SELECTED]:
        row = {"upload": name, "λ": mean_sd(_values(seeds, name, "lam"), 2) if name not in (CLEAN, FULL_FT, SCALED)
               else "—",
               "own clean acc.": mean_sd(_values(seeds, name, "own_ca")),
               "own ASR": mean_sd(_values(seeds, name, "own_asr")),
               "‖τ‖": mean_sd(_values(seeds, name, "norm"), 2),
               "cos(τ, benign τ)": mean_sd(_values(seeds, name, "cos_benign"))}
        for scheme in SCHEMES:
            row[f"ASR, {scheme}"] = mean_sd(_values(seeds, name, "asr", scheme))
            row[f"clean target rate, {scheme}"] = mean_sd(_values(seeds, name, "target_rate", scheme))
            row[f"random-patch ASR, {scheme}"] = mean_sd(_values(seeds, name, "asr_random", scheme))
            row[f"clean acc., {scheme}"] = mean_sd(_values(seeds, name, "ca", scheme))
        rows.append(row)
    return pd.DataFrame(rows).set_index("upload")


def reference_table(results: LobamResults) -> pd.DataFrame:
    """The references: θ_pre (with the trigger: does the trigger alone fool the pre-trained model?), each user's own
    fine-tuned clean accuracy, and the benign users' ‖τ‖; mean ± sd over seeds."""
    seeds = results.main
    rows = []
    for task in seeds[0].pre["ca"]:
        rows.append({"task": task, "θ_pre clean acc.": mean_sd(np.array([r.pre["ca"][task] for r in seeds])),
                     "fine-tuned clean acc. (own)": mean_sd(np.array([r.finetuned[task] for r in seeds])),
                     "benign ‖τ‖": mean_sd(np.array([r.benign_norms[task] for r in seeds]), 2)
                     if task in seeds[0].benign_norms else "— (attacker)"})
    table = pd.DataFrame(rows).set_index("task")
    table.attrs["pre_asr"] = mean_sd(np.array([r.pre["asr"] for r in seeds]))
    table.attrs["pre_target_rate"] = mean_sd(np.array([r.pre["target_rate"] for r in seeds]))
    return table


def per_task_table(results: LobamResults) -> pd.DataFrame:
    """Merged clean accuracy per task and merging scheme (mean ± sd over seeds) for the clean merge, the attacks and
    every λ of the sweep."""
    seeds = results.main
    uploads = [CLEAN, FULL_FT, *_sweep(seeds), SELECTED]
    rows = {}
    for scheme in SCHEMES:
        for t in seeds[0].pre["ca"]:
            rows[(scheme, t)] = {u: mean_sd(np.array([r.uploads[u]["merged"][scheme]["ca"][t] for r in seeds]))
                                 for u in uploads}
    return pd.DataFrame(rows).T


def width_table(results: LobamResults) -> pd.DataFrame:
    """The wider-backbone question: per ViT width, the λ the stealth rule picks, cos(θ_mal − θ_ben, θ_ben − θ_pre),
    the upload's own clean accuracy (θ_ben's and at each λ of the sweep) and the merged ASR (task arithmetic) at
    λ = 1 and at the largest λ; mean ± sd over seeds."""
    rows = []
    for width, seeds in {results.hidden: results.main, **results.widths}.items():
        sweep = _sweep(seeds)
        row = {"ViT width": width, "selected λ": mean_sd(np.array([r.lam_selected for r in seeds]), 2),
               "cos(residual, benign update)": mean_sd(np.array([r.residual_cosine for r in seeds])),
               "θ_ben own acc.": mean_sd(_values(seeds, CLEAN, "own_ca"))}
        for name in sweep:
            row[f"own acc., {name.split(', ')[-1]}"] = mean_sd(_values(seeds, name, "own_ca"))
        largest = sweep[-1].split(", ")[-1]
        for name, label in ((NAIVE, "λ = 1"), (sweep[-1], largest)):
            row[f"merged ASR (TA), {label}"] = mean_sd(_values(seeds, name, "asr", "task arithmetic"))
            row[f"merged clean target rate (TA), {label}"] = mean_sd(_values(seeds, name, "target_rate",
                                                                         "task arithmetic"))
            row[f"merged backdoor (TA), {label}"] = mean_sd(_values(seeds, name, "backdoor", "task arithmetic"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("ViT width").T


def width_sentence(results: LobamResults) -> str:
    """The wider-backbone question answered from the numbers: per width, how far θ_mal (λ = 1) falls below θ_ben
    on its own task, the residual's cosine with the benign update, and the λ the rule picked."""
    parts = []
    for width, seeds in {results.hidden: results.main, **results.widths}.items():
        gap = _values(seeds, NAIVE, "own_ca") - _values(seeds, CLEAN, "own_ca")
        cos = np.array([r.residual_cosine for r in seeds])
        lam = np.array([r.lam_selected for r in seeds])
        parts.append(f"at width {width}, θ_mal's own clean accuracy is {-gap.mean():.3f} below θ_ben's (per seed: "
                     f"{', '.join(f'{-g:.2f}' for g in gap)}), the residual's cosine with the benign update is "
                     f"{cos.mean():+.2f}, and the stealth rule picks λ > 1 in {int((lam > 1).sum())} of {len(lam)} "
                     f"seeds")
    return "Measured: " + "; ".join(parts) + "."


# ------------------------------------------------------------------------------------------------ figures


def _band(ax, x, values: np.ndarray, label: str, **kw) -> None:
    mean, sd = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    (line,) = ax.plot(x, mean, marker="o", label=label, **kw)
    ax.fill_between(x, mean - sd, mean + sd, alpha=0.2, color=line.get_color())


def plot_lambda(results: LobamResults) -> Figure:
    """ASR and mean clean accuracy of the merged model against λ per merging scheme, and the upload's own clean
    accuracy and ‖τ‖ against λ; mean ± sd over seeds, references as dashed lines."""
    seeds = results.main
    sweep = _sweep(seeds)
    lams = [seeds[0].uploads[n]["lam"] for n in sweep]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    colours = {"task arithmetic": "tab:blue", "TIES": "tab:orange"}
    for scheme in SCHEMES:
        c = colours[scheme]
        _band(axes[0], lams, np.stack([_values(seeds, n, "asr", scheme) for n in sweep], 1), f"LoBAM, {scheme}",
              color=c)
        axes[0].axhline(_values(seeds, FULL_FT, "asr", scheme).mean(), ls="--", color=c,
                        label=f"full-FT BadMerging, {scheme}")
        _band(axes[1], lams, np.stack([_values(seeds, n, "ca", scheme) for n in sweep], 1), f"LoBAM, {scheme}",
              color=c)
        axes[1].axhline(_values(seeds, CLEAN, "ca", scheme).mean(), ls="--", color=c, label=f"clean merge, {scheme}")
    axes[0].set(xlabel="λ", ylabel="attack success rate (merged)", ylim=(-0.02, 1.02), title="backdoor after merging")
    axes[1].set(xlabel="λ", ylabel="clean accuracy, mean over tasks", title="merged model's clean accuracy")
    _band(axes[2], lams, np.stack([_values(seeds, n, "own_ca") for n in sweep], 1), "upload's own clean acc.",
          color="tab:green")
    axes[2].axhline(_values(seeds, CLEAN, "own_ca").mean(), ls="--", color="tab:green", label="θ_ben's")
    axes[2].set(xlabel="λ", ylabel="clean accuracy, attacker's task", ylim=(0, 1), title="the upload itself")
    twin = axes[2].twinx()
    twin.plot(lams, np.stack([_values(seeds, n, "norm") for n in sweep], 1).mean(0), color="tab:red", marker="s",
              label="‖τ_upload‖")
    twin.axhline(max(max(r.benign_norms.values()) for r in seeds), ls=":", color="tab:red",
                 label="largest benign user's ‖τ‖")
    twin.axhline(_values(seeds, CLEAN, "norm").mean(), ls="--", color="tab:red", label="θ_ben's ‖τ‖")
    twin.set_ylabel("‖τ‖", color="tab:red")
    selected = _values(seeds, SELECTED, "lam").mean()
    for ax in axes:
        ax.axvline(selected, color="grey", lw=0.8)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    lines = axes[2].get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    axes[2].legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="center right")
    fig.tight_layout()
    return fig


def plot_widths(results: LobamResults) -> Figure:
    """Per ViT width: the upload's own clean accuracy and the merged backdoor (task arithmetic: ASR − clean target
    rate) against λ."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for width, seeds in {results.hidden: results.main, **results.widths}.items():
        sweep = _sweep(seeds)
        lams = [seeds[0].uploads[n]["lam"] for n in sweep]
        _band(axes[0], lams, np.stack([_values(seeds, n, "own_ca") for n in sweep], 1), f"width {width}")
        _band(axes[1], lams, np.stack([_values(seeds, n, "backdoor", "task arithmetic") for n in sweep], 1),
              f"width {width}")
    axes[0].set(xlabel="λ", ylabel="upload's own clean accuracy", ylim=(0, 1), title="stealth of the upload")
    axes[1].set(xlabel="λ", ylabel="ASR − clean target rate (TA)", ylim=(-0.02, 1.02), title="backdoor after merging")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_trigger(results: LobamResults) -> Figure:
    """Each seed's optimised trigger pasted on a grey image (the patch sits in the bottom-right corner), as the
    run stored it."""
    seeds = results.main
    fig, axes = plt.subplots(1, len(seeds), figsize=(1.6 * len(seeds), 1.8), squeeze=False)
    for ax, r in zip(axes[0], seeds, strict=True):
        shown = np.asarray(r.trigger_shown).transpose(1, 2, 0)  # [H, W, C]
        ax.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"seed {r.seed}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ claims


def _path(upload: str, what: str, scheme: str | None = None) -> str:
    """The results expression of :func:`_values` (``upload``, ``what``, ``scheme``) over seeds: what the claims file
    names as an estimate's ``from``."""
    entry = f'main[:].uploads["{upload}"]'
    if scheme is None:
        return f"{entry}.{what}"
    merged = f'{entry}.merged["{scheme}"]'
    if what == "ca":
        return f"{merged}.ca[:]"  # mean over tasks, then over seeds: every seed has the same tasks
    if what == "backdoor":
        return f"({merged}.asr - {merged}.target_rate)"
    if what == "trigger_gain":
        return f"({merged}.asr - {merged}.asr_random)"
    return f"{merged}.{what}"


def _diff(seeds: list[SeedResult], a: str, b: str | None, what: str, scheme: str | None = None) -> Interval:
    """Paired t interval over seeds of ``what`` of upload ``a`` minus that of upload ``b`` (``b`` None: minus 0)."""
    other = 0.0 if b is None else _values(seeds, b, what, scheme)
    where = f"=mean({_path(a, what, scheme)}{'' if b is None else f' - {_path(b, what, scheme)}'})"
    return paired_t(_values(seeds, a, what, scheme), other, source=where)


def _gains(seeds: list[SeedResult], scheme: str, *uploads: tuple[str, str]) -> str:
    """trigger_gain (ASR − random-patch ASR on the same merged model) of each (label, upload): shown beside C1, C2
    and C4 (issue 30 judges on it)."""
    return "trigger_gain " + ", ".join(f"{label} {mean_sd(_values(seeds, u, 'trigger_gain', scheme))}"
                                       for label, u in uploads)


def claim_c1(sheet: ClaimSheet, seeds: list[SeedResult]) -> Claim:
    """C1: backdoor(naive LoRA) − backdoor(full FT) per scheme against the paper's drop of at least 0.40; the
    reference attack's survival of the merge is premise R2, the smaller LoRA update premise R1."""
    parts, ours = {}, []
    for scheme in SCHEMES:
        full = _values(seeds, FULL_FT, "backdoor", scheme)
        d = _diff(seeds, NAIVE, FULL_FT, "backdoor", scheme)
        parts[scheme] = judge_effect(d, -EFFECT_DROP, what=f"backdoor(naive LoRA) − backdoor(full FT), {scheme}")
        ours.append(f"{scheme}: {d.text()} (full FT's backdoor {mean_sd(full)}; "
                    f"{_gains(seeds, scheme, ('naive LoRA', NAIVE), ('full FT', FULL_FT))})")
    ratio = _values(seeds, NAIVE, "norm") / _values(seeds, FULL_FT, "norm")
    return sheet.add("C1", "; ".join(ours) + f"; ‖τ(naive LoRA)‖ / ‖τ(full FT)‖ = {mean_sd(ratio, 2)}",
                     judge_all(parts), premises=("R1", "R2", "R4"))


def claim_c2(sheet: ClaimSheet, seeds: list[SeedResult]) -> Claim:
    """C2: at the selected λ, per scheme, one sentence of three parts (a conjunction): the backdoor (ASR − clean
    target rate, so that a merged model that calls everything the target does not count) reaches 0.9, is no worse
    than full FT's, and gains at least 0.40 over the naive LoRA attack; the schemes combine by judge_all."""
    parts, ours = {}, []
    for scheme in SCHEMES:
        asr = _values(seeds, SELECTED, "asr", scheme)
        level = _diff(seeds, SELECTED, None, "backdoor", scheme)
        gain = _diff(seeds, SELECTED, NAIVE, "backdoor", scheme)
        vs_full = _diff(seeds, SELECTED, FULL_FT, "backdoor", scheme)
        parts[scheme] = judge_conjunction({
            f"level ≥ {ASR_LEVEL:g}": judge_effect(level, ASR_LEVEL, what="backdoor(LoBAM)", effect_name="our level"),
            "vs full FT": judge_noninferior(vs_full, MARGIN_ASR, what="backdoor(LoBAM) − backdoor(full FT)"),
            "gain over naive LoRA": judge_effect(gain, EFFECT_DROP, what="backdoor(LoBAM) − backdoor(naive LoRA)")})
        ours.append(f"{scheme}: ASR {mean_sd(asr)}, backdoor {level.text()}, − naive {gain.text()}, − full FT "
                    f"{vs_full.text()}; "
                    + _gains(seeds, scheme, ("LoBAM", SELECTED), ("naive LoRA", NAIVE), ("full FT", FULL_FT)))
    lam = _values(seeds, SELECTED, "lam")
    return sheet.add("C2", f"selected λ {mean_sd(lam, 2)}; " + "; ".join(ours), judge_all(parts),
                     premises=("R1", "R2", "R4"))


def claim_c3(sheet: ClaimSheet, seeds: list[SeedResult]) -> Claim:
    """C3: merged mean clean accuracy, LoBAM − clean merge, no worse than the margin of 3 points, per scheme."""
    parts, ours = {}, []
    for scheme in SCHEMES:
        d = _diff(seeds, SELECTED, CLEAN, "ca", scheme)
        parts[scheme] = judge_noninferior(d, MARGIN_CA, what=f"CA(LoBAM merge) − CA(clean merge), {scheme}")
        ours.append(f"{scheme}: {d.text()}")
    return sheet.add("C3", "; ".join(ours), judge_all(parts), premises=("R3", "R4"))


def claim_c3b(sheet: ClaimSheet, seeds: list[SeedResult], stealth_rule: str) -> Claim:
    """C3b: the stealth rule amplifies *and* the upload stays stealthy (a conjunction): the selected λ − 1 against
    the sweep's smallest amplification (+0.5), and the upload's own clean accuracy against θ_ben's (margin 3
    points)."""
    lam = _values(seeds, SELECTED, "lam")
    amplified = paired_t(lam, 1.0, source="=mean(main[:].lam_selected - 1)")
    d = _diff(seeds, SELECTED, CLEAN, "own_ca")
    norm_ratio = _values(seeds, SELECTED, "norm") / _values(seeds, CLEAN, "norm")
    naive_passes = sum(bool(r.stealth.get("passes_at_1")) for r in seeds)
    ours = (f"λ > 1 in {int((lam > 1).sum())} of {len(seeds)} seeds (selected λ − 1 {amplified.text(2)}); own CA − "
            f"θ_ben's {d.text()}; ‖τ_upload‖ / ‖τ_ben‖ = {mean_sd(norm_ratio, 2)}; the naive upload (λ = 1) itself "
            f"passes the rule in {naive_passes} of {len(seeds)} seeds")
    v = judge_conjunction({
        "the rule amplifies": judge_effect(amplified, EFFECT_LAMBDA, what=f"selected λ − 1 (rule: {stealth_rule})",
                                           effect_name="our smallest amplification"),
        "the upload stays stealthy": judge_noninferior(d, MARGIN_CA, what="own CA(upload) − own CA(θ_ben)")})
    return sheet.add("C3b", ours, v, premises=("R3",))


def _c4_part(seeds: list[SeedResult], sweep: list[str], scheme: str) -> tuple[Verdict, str]:
    """C4 under one scheme, one sentence ("does not fall, and rises"): every step of the λ sweep no worse than
    −0.05 (non-inferiority), and the backdoor at the largest λ above λ = 1's by at least +0.05; and our text."""
    pairs = list(zip(sweep[:-1], sweep[1:], strict=True))
    steps = [_diff(seeds, b, a, "backdoor", scheme) for a, b in pairs]
    total = _diff(seeds, sweep[-1], sweep[0], "backdoor", scheme)
    scaled_lam = LOBAM_NAME.format(lam=SCALED_LAM)
    equal_norm = (_diff(seeds, scaled_lam, SCALED, "backdoor", scheme) if scaled_lam in seeds[0].uploads else None)
    lam = {n: seeds[0].uploads[n]["lam"] for n in sweep}
    largest = f"λ = {lam[sweep[-1]]:g}"
    parts = {f"step λ {lam[a]:g} → {lam[b]:g}": judge_noninferior(st, MARGIN_ASR, what=f"backdoor step, {scheme}")
             for (a, b), st in zip(pairs, steps, strict=True)}
    parts[f"rise, {largest} − λ = 1"] = judge_effect(total, EFFECT_RISE, what=f"backdoor rise, {scheme}",
                                                     effect_name="our")
    control = ("" if equal_norm is None else
               f"; at equal ‖τ‖, LoBAM λ = {SCALED_LAM:g} − scaled naive LoRA {equal_norm.text()}")
    gains = _gains(seeds, scheme, ("λ = 1", sweep[0]), (largest, sweep[-1]))
    return judge_conjunction(parts), (f"{scheme}: smallest step {min(st.mean for st in steps):+.3f}, {largest} − "
                                      f"λ = 1 {total.text()}{control}; {gains}")


def claim_c4(sheet: ClaimSheet, seeds: list[SeedResult]) -> Claim:
    """C4: the merged backdoor does not fall as λ grows, and rises (the theorem's consequence), under each scheme;
    the schemes combine by judge_all."""
    sweep = _sweep(seeds)
    parts, ours = {}, []
    for scheme in SCHEMES:
        parts[scheme], text = _c4_part(seeds, sweep, scheme)
        ours.append(text)
    return sheet.add("C4", "; ".join(ours), judge_all(parts), premises=("R3", "R4"))


# ------------------------------------------------------------------------------------------------ premises


def premises(results: LobamResults, params: dict[str, Any]) -> list[Premise]:
    """The premises issue 30 names, measured where these results allow: R1 the LoRA update smaller than full
    fine-tuning's (its malicious part only: no benign full fine-tune is run), R2 the full-FT reference's trigger_gain
    under task arithmetic, R3 benign LoRA users as accurate as full fine-tuning (not measured: no benign full
    fine-tune), R4 the clean merge keeps at least half of every task's fine-tuned gain over chance."""
    seeds = results.main
    ratio = _values(seeds, NAIVE, "norm") / _values(seeds, FULL_FT, "norm")
    worst = float(ratio.max())
    per_seed = ", ".join(f"{x:.2f}" for x in ratio)
    # a conjunction: its measured (malicious) part failing is enough; holding, the unmeasured benign part decides
    r1 = Premise("R1", "a LoRA update is smaller than full fine-tuning's, for the malicious and the benign uploads: "
                       "‖τ_LoRA‖ / ‖τ_FT‖", "< 1 in every seed, both",
                 f"malicious {worst:.2f} (largest of seeds {per_seed}); benign not measured",
                 False if worst >= 1 else None,
                 f'main[:].uploads["{NAIVE}"].norm; main[:].uploads["{FULL_FT}"].norm',
                 "the update norms of C1's compared arms, a property of their training, not their backdoor; over "
                 "every encoder weight (issue 30 takes both over the projections LoRA adapts); the benign part needs "
                 "a benign full fine-tune, not run here (issue 30)")
    gain = _values(seeds, FULL_FT, "trigger_gain", "task arithmetic")
    ties = _values(seeds, FULL_FT, "trigger_gain", "TIES")
    r2 = premise("R2", "the full fine-tuning BadMerging reference survives merging: its trigger_gain (ASR − "
                       "random-patch ASR) under task arithmetic, mean over seeds", float(gain.mean()),
                 at_least=REFERENCE_GAIN, fmt="{:.3f}",
                 source=f'main[:].uploads["{FULL_FT}"].merged["task arithmetic"].asr; '
                        f'main[:].uploads["{FULL_FT}"].merged["task arithmetic"].asr_random',
                 note="the reference arm's level that makes C1 and C2 measurable (a reference attack that is mostly "
                      f"a bias to the target for any patch leaves LoRA nothing to weaken); per seed "
                      f"{', '.join(f'{x:.3f}' for x in gain)}; under TIES {ties.mean():.3f}, not required by "
                      "issue 30")
    r3 = premise("R3", "benign LoRA users reach their task: own clean accuracy, LoRA − full fine-tuning, every "
                       "benign user", None, at_least=-BENIGN_MARGIN,
                 required=f"≥ −{BENIGN_MARGIN:g} (at most {100 * BENIGN_MARGIN:g} points below)",
                 note="needs benign full fine-tunes, not run here (issue 30)")
    ratios = []
    for r in seeds:
        for scheme in SCHEMES:
            for task, merged in r.uploads[CLEAN]["merged"][scheme]["ca"].items():
                chance = 1 / N_CLASSES[task] if task in N_CLASSES else float("nan")
                ratios.append((merged - chance) / (r.finetuned[task] - chance))
    useful = float(np.min(ratios)) if ratios and np.all(np.isfinite(ratios)) else None
    r4 = premise("R4", "the merge is useful: (clean merge's accuracy − chance) / (the user's own fine-tuned accuracy "
                       "− chance), every task, scheme and seed", useful, at_least=MERGE_USEFUL, fmt="{:.2f}",
                 source=f'main[:].uploads["{CLEAN}"].merged; main[:].finetuned',
                 note="the clean merge is C3's reference arm: its level; chance = 1 / classes, from the tasks' "
                      "class counts (not stored in the results)")
    return [r1, r2, r3, r4]


def claims(results: LobamResults, params: dict[str, Any]) -> list[Claim]:
    """The claims table, with the rules the notebook states before the numbers, on the main width's seeds. Schemes
    combine by :func:`~replbook.verdicts.judge_all`, one sentence's parts by
    :func:`~replbook.verdicts.judge_conjunction`; one seed gives intervals without bounds (inconclusive). A claim
    whose premise (:func:`premises`) does not hold is not comparable."""
    seeds = results.main
    sheet = ClaimSheet(CLAIMS, params["profile"])
    claim_c1(sheet, seeds)
    claim_c2(sheet, seeds)
    claim_c3(sheet, seeds)
    claim_c3b(sheet, seeds, params["stealth_rule"])
    claim_c4(sheet, seeds)
    return apply_premises(sheet.claims, premises(results, params))
