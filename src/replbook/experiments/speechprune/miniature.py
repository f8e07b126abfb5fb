"""The SpeechPrune miniature, SPIRAL-mini spoken: passages about three reader windows long, a question about one key
sentence, and a small speech LLM whose window holds ``b_max`` speech tokens. The conditions of the paper's Table I
and Fig. 3 (Original, RAP, RAC, Phase-1 only, Phase-2 only, SpeechPrune) plus an oracle that keeps the key sentence
and the unpruned passage with its key sentence cut out (the reader's premise: without the key it answers no better
than from the question alone).

Backends. ``espeak``: each sentence is spoken by espeak-ng (a voice and rate per speaker), sentences are packed into
30-s windows and encoded by the real Whisper tiny.en encoder, and each sentence's states (20 ms) are cut out and
averaged ``pool`` at a time into speech tokens; word labels per token come from a proportional (character-count)
alignment. ``pseudo`` (smoke): each word becomes 2-4 tokens of a fixed random "acoustic" vector plus noise.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from replbook import speechprune as sp
from replbook.cache import cache_key, train_or_load
from replbook.data.spiral_mini import Item, make_items, vocabulary
from replbook.experiments.speechprune.common import (
    KEY_REMOVED,
    ORACLE,
    CostRow,
    Pruning,
    SpeechpruneResults,
    pruning_conditions,
    tabulate,
)
from replbook.models.speech_reader import SpeechReader
from replbook.paths import cache_dir
from replbook.progress import progress

VOICES = ("en-us+m1", "en-us+f2", "en-us+m3", "en-gb+f4", "en-us+m7")
ENCODER_DIM = 384  # Whisper tiny.en
SPECIALS = ("[PAD]", "[SIL]")


@dataclass(frozen=True)
class SpeechData:
    """SPIRAL-mini and its speech: items, fillers, training clips, the speech backend and its pooling, and the seed
    (the parameters of the same names)."""

    backend: str
    n_train: int
    n_test: int
    n_fillers: int
    clips_per_item: int
    pool: int
    seed: int


@dataclass(frozen=True)
class ReaderSetup:
    """The small speech LLM and its training (the parameters of the same names)."""

    d_model: int
    layers: int
    heads: int
    b_max: int
    epochs: int
    lr: float
    batch_size: int
    align_weight: float
    token_dropout: float
    seed: int


# --- speech tokens per sentence -------------------------------------------------------------------------------------


def _word_labels(sentence: str, n_tokens: int, word_ids: dict[str, int]) -> np.ndarray:
    """Proportional alignment: token t (centre (t + ½)/n of the sentence) is labelled with the word whose share of the
    sentence's characters covers that point."""
    words = sentence.lower().split()
    ends = np.cumsum([len(w) + 1 for w in words]) / sum(len(w) + 1 for w in words)
    centres = (np.arange(n_tokens) + 0.5) / n_tokens
    return np.array([word_ids[words[min(int(np.searchsorted(ends, c)), len(words) - 1)]] for c in centres])


def _pseudo_tokens(sentences: list[str], word_ids: dict[str, int], seed: int) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    acoustic = rng.normal(size=(len(word_ids), ENCODER_DIM)).astype(np.float32)
    out = {}
    for sentence in sentences:
        states, labels = [], []
        for word in sentence.lower().split():
            for _ in range(int(rng.integers(2, 5))):
                states.append(acoustic[word_ids[word]] + 0.5 * rng.normal(size=ENCODER_DIM).astype(np.float32))
                labels.append(word_ids[word])
        out[sentence] = (np.stack(states), np.array(labels))
    return out


def _espeak_tokens(keys: list[tuple[str, int]], word_ids: dict[str, int], pool: int) -> dict[tuple, tuple]:
    """(sentence, voice) → (tokens [T, 384], labels [T]): sentences packed into 30-s windows for the encoder."""
    from replbook.data.speech import SAMPLE_RATE, synthesize
    from replbook.models.whisper_ct2 import load_whisper_tiny_en

    model, extractor, _ = load_whisper_tiny_en()
    encoder = model.model.encoder
    audio = {k: synthesize(k[0], VOICES[k[1] % len(VOICES)], rate=150 + 10 * (k[1] % 5))
             for k in progress(keys, desc="espeak-ng", leave=False)}
    window, gap = 30 * SAMPLE_RATE, int(0.2 * SAMPLE_RATE)
    packs, current, used = [], [], 0
    for k in keys:
        n = min(len(audio[k]), window - gap)
        if used + n + gap > window:
            packs.append(current)
            current, used = [], 0
        current.append((k, used, n))
        used += n + gap
    packs.append(current)
    out = {}
    for pack in progress(packs, desc="Whisper encoder", leave=False):
        wave = np.zeros(window, dtype=np.float32)
        for k, start, n in pack:
            wave[start : start + n] = audio[k][:n]
        feats = extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.no_grad():
            states = encoder(feats).last_hidden_state[0].numpy()  # [1500, 384], 20 ms each
        for k, start, n in pack:
            first, last = start // 320, max(start // 320 + pool, (start + n) // 320)
            seg = states[first:last]
            seg = seg[: len(seg) // pool * pool].reshape(-1, pool, ENCODER_DIM).mean(1)
            out[k] = (seg.astype(np.float32), _word_labels(k[0], len(seg), word_ids))
    return out


@dataclass
class Passage:
    tokens: torch.Tensor  # [N, 384] encoder states, one row per speech token
    labels: torch.Tensor  # [N] word id per token
    key_span: tuple[int, int]
    question: torch.Tensor  # [L] word ids
    choices: torch.Tensor  # [4, C] word ids
    answer: int


def _ids(text: str, word_ids: dict[str, int]) -> list[int]:
    return [word_ids[w] for w in text.lower().replace("?", " ").split()]


def build_passages(items: list[Item], features, word_ids: dict[str, int], backend: str,
                   sentence_order: list[list[int]] | None = None) -> list[Passage]:
    """Concatenate each item's sentence tokens (in ``sentence_order`` if given) into a passage."""
    out = []
    for n, item in enumerate(items):
        order = sentence_order[n] if sentence_order else list(range(len(item.sentences)))
        parts, start, key_span = [], 0, (0, 0)
        for j in order:
            key = item.sentences[j] if backend == "pseudo" else (item.sentences[j], item.speakers[j])
            states, labels = features[key]
            if j == item.key_index:
                key_span = (start, start + len(states))
            parts.append((states, labels))
            start += len(states)
        choices = [_ids(c, word_ids) for c in item.choices]
        width = max(len(c) for c in choices)
        out.append(Passage(torch.from_numpy(np.concatenate([s for s, _ in parts])),
                           torch.from_numpy(np.concatenate([lab for _, lab in parts])), key_span,
                           torch.tensor(_ids(item.question, word_ids)),
                           torch.tensor([c + [0] * (width - len(c)) for c in choices]), item.answer))
    return out


def make_data(setup: SpeechData) -> dict[str, Any]:
    """Items, vocabulary, speech tokens (cached on disk for espeak), test passages and training clips."""
    train_items = make_items(setup.n_train, setup.seed, setup.n_fillers)
    test_items = make_items(setup.n_test, setup.seed + 10_000, setup.n_fillers)
    words = list(SPECIALS) + vocabulary(train_items + test_items)
    word_ids = {w: i for i, w in enumerate(words)}
    all_items = train_items + test_items
    if setup.backend == "pseudo":
        features = _pseudo_tokens(sorted({s for it in all_items for s in it.sentences}), word_ids, setup.seed)
    else:
        keys = sorted({(s, spk) for it in all_items for s, spk in zip(it.sentences, it.speakers, strict=True)})
        key = cache_key(kind="speechprune-espeak", keys=keys, pool=setup.pool, voices=VOICES, v=1)
        path = cache_dir() / "speechprune" / f"tokens-{key}.npz"
        if path.exists():
            stored = np.load(path, allow_pickle=False)
            features = {k: (stored[f"s{i}"], stored[f"l{i}"]) for i, k in enumerate(keys)}
        else:
            features = _espeak_tokens(keys, word_ids, setup.pool)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".partial.npz")
            np.savez(tmp, **{f"s{i}": features[k][0] for i, k in enumerate(keys)},
                     **{f"l{i}": features[k][1] for i, k in enumerate(keys)})
            tmp.replace(path)
    rng = random.Random(setup.seed)
    clip_orders = []
    clip_items = []
    for item in train_items:
        others = [j for j in range(len(item.sentences)) if j != item.key_index]
        for _ in range(setup.clips_per_item):
            order = [item.key_index, *rng.sample(others, rng.randint(0, 3))]
            rng.shuffle(order)
            clip_items.append(item)
            clip_orders.append(order)
    clips = build_passages(clip_items, features, word_ids, setup.backend, clip_orders)
    return {"words": words, "test": build_passages(test_items, features, word_ids, setup.backend), "clips": clips,
            "test_items": test_items}


# --- the reader -----------------------------------------------------------------------------------------------------


def _batch(passages: list[Passage], indices: list[torch.Tensor] | None, model: SpeechReader):
    """Pad the selected speech tokens (projected), questions and choices of a batch."""
    sel = [ps.tokens if idx is None else ps.tokens[idx] for ps, idx in
           zip(passages, indices or [None] * len(passages), strict=True)]
    sel = [s[: model.b_max] for s in sel]
    s_len = max(len(s) for s in sel)
    speech = torch.zeros(len(sel), s_len, ENCODER_DIM)
    mask = torch.zeros(len(sel), s_len, dtype=torch.bool)
    for i, s in enumerate(sel):
        speech[i, : len(s)], mask[i, : len(s)] = s, True
    q_len = max(len(ps.question) for ps in passages)
    questions = torch.stack([F.pad(ps.question, (0, q_len - len(ps.question))) for ps in passages])
    c_len = max(ps.choices.shape[1] for ps in passages)
    choices = torch.stack([F.pad(ps.choices, (0, c_len - ps.choices.shape[1])) for ps in passages])
    return model.project(speech), mask, questions, choices


def _fit_reader(model: SpeechReader, clips: list[Passage], setup: ReaderSetup) -> list[float]:
    """Train the projector and reader on the clips with token dropout and the word-alignment loss; returns the
    per-epoch mean loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=setup.lr)
    gen = torch.Generator().manual_seed(setup.seed)
    losses = []
    for _ in progress(range(setup.epochs), desc="reader", leave=False):
        model.train()
        order = torch.randperm(len(clips), generator=gen).tolist()
        total = 0.0
        for i in range(0, len(order), setup.batch_size):
            batch = [clips[j] for j in order[i : i + setup.batch_size]]
            # pruned inputs have gaps; a 7B LLM copes with them, a reader this small must see some in training
            keep = []
            for c in batch:
                n = min(len(c.tokens), model.b_max)
                drop = int(float(torch.rand(1, generator=gen)) * setup.token_dropout * n)
                keep.append(torch.randperm(n, generator=gen)[: n - drop].sort().values)
            speech, mask, questions, choices = _batch(batch, keep, model)
            loss = F.cross_entropy(model(speech, mask, questions, choices), torch.tensor([c.answer for c in batch]))
            if setup.align_weight > 0:
                labels = torch.zeros(mask.shape, dtype=torch.long)
                for k, (c, idx) in enumerate(zip(batch, keep, strict=True)):
                    labels[k, : len(idx)] = c.labels[idx]
                loss = loss + setup.align_weight * F.cross_entropy(model.word_logits(speech[mask]), labels[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(clips))
    return losses


def train_reader(setup: ReaderSetup, data: dict[str, Any]) -> tuple[SpeechReader, list[float]]:
    """Train (or load from the cache, keyed by every clip's tokens, labels, question and answer) the projector and
    reader; returns the model and its per-epoch mean loss."""
    torch.manual_seed(setup.seed)
    model = SpeechReader(len(data["words"]), ENCODER_DIM, setup.d_model, setup.layers, setup.heads, setup.b_max)
    hyper = {k: getattr(setup, k) for k in ("epochs", "lr", "batch_size", "align_weight", "token_dropout", "seed")}
    losses = train_or_load("speechprune-reader", model, lambda: _fit_reader(model, data["clips"], setup),
                           data=(data["clips"], data["words"]), hyper=hyper, code=(_fit_reader, _batch))
    return model.eval(), losses


# --- conditions -----------------------------------------------------------------------------------------------------


def condition_indices(pruning: Pruning, model: SpeechReader, passage: Passage, item_index: int,
                      ) -> dict[tuple[str, float, int], torch.Tensor]:
    """Every condition's kept indices for one passage, plus the key-sentence oracle and the passage without its key
    sentence (its other tokens in order, the first ``b_max`` of them: Original's window of the cut passage). PR is
    relative to b_max."""
    n = len(passage.tokens)
    n1 = min(pruning.b_max, n)
    with torch.no_grad():
        speech = model.project(passage.tokens)[None]
        text = model.embed(passage.question)[None]
    w_q, w_k = model.first_layer_qk()

    def select(pr: float, phase1: bool, phase2: bool) -> torch.Tensor:
        return sp.speechprune_select(speech, text, w_q, w_k, n1, pr, pruning.frame_size, pruning.heads,
                                     use_phase1=phase1, use_phase2=phase2)[0]

    out = pruning_conditions(n, n1, pruning.prune_rates, pruning.random_seeds, item_index, select)
    out[(ORACLE, 0.0, 0)] = torch.arange(*passage.key_span)[: pruning.b_max]
    start, end = passage.key_span
    out[(KEY_REMOVED, 0.0, 0)] = torch.cat([torch.arange(start), torch.arange(end, n)])[: pruning.b_max]
    return out


def run_miniature(data_setup: SpeechData, reader: ReaderSetup, pruning: Pruning, threads: int
                  ) -> SpeechpruneResults:
    """Train (or load) the reader, prune every test passage under every condition and record each answer."""
    torch.set_num_threads(threads)
    data = make_data(data_setup)
    model, losses = train_reader(reader, data)
    test = data["test"]
    res = SpeechpruneResults(losses=losses, passage_tokens=[len(t.tokens) for t in test],
                             key_tokens=[t.key_span[1] - t.key_span[0] for t in test])
    res.key_in_window = float(np.mean([t.key_span[1] <= pruning.b_max for t in test]))
    selections = [condition_indices(pruning, model, t, i) for i, t in enumerate(progress(test, desc="selection",
                                                                                        leave=False))]
    rows = []
    for cond in selections[0]:
        for start in range(0, len(test), 64):
            batch = test[start : start + 64]
            idx = [selections[start + i][cond] for i in range(len(batch))]
            with torch.no_grad():
                pred = model(*_batch(batch, idx, model)).argmax(-1)
            for i, passage in enumerate(batch):
                rows.append({"item": start + i, "condition": cond[0], "pr": cond[1], "seed": cond[2],
                             "correct": bool(pred[i] == passage.answer), "kept": len(idx[i]),
                             "retention": sp.key_sentence_retention(idx[i], passage.key_span)})
    res.conditions = tabulate(rows)
    return res


# --- cost -----------------------------------------------------------------------------------------------------------


def prefill_cost(d_model: int, layers: int, heads: int, b_max: int, prune_rates: list[float],
                 question_tokens: int = 12, repeats: int = 5) -> list[CostRow]:
    """Reader prefill at the kept token counts (Original: the full window, then each prune rate): analytic FLOPs
    (linear layers and attention scores) and measured wall time (batch 1, best of ``repeats``), on a reader of this
    profile's shape with random weights."""
    model = SpeechReader(100, ENCODER_DIM, d_model, layers, heads, b_max).eval()
    rows = []
    for pr in [None, *prune_rates]:
        kept = b_max if pr is None else round((1 - pr) * b_max)
        n = kept + question_tokens
        flops = layers * (2 * n * 12 * d_model * d_model + 4 * n * n * d_model)
        with torch.no_grad():
            speech = model.project(torch.randn(1, kept, ENCODER_DIM))
        args = (speech, torch.ones(1, kept, dtype=torch.bool), torch.randint(2, 100, (1, question_tokens)),
                torch.randint(2, 100, (1, 4, 2)))
        with torch.no_grad():
            model(*args)
            best = min(_timed(model, args) for _ in range(repeats))
        rows.append(CostRow(pr, kept, flops / 1e6, 1e3 * best))
    return rows


def _timed(model: SpeechReader, args: tuple) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(*args)
    return time.perf_counter() - start
