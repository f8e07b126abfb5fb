"""SpeechPrune's selection cost against the network it saves compute for, in one process.

At the paper's sizes (Qwen2-Audio: about 2,200 speech tokens of width 4096 for 90 s of audio, Phase-1 target 750,
32 heads): the wall time of `replbook.speechprune.speechprune_select` (both phases) against the forward time of one
Qwen2 decoder layer of that width (transformers' `Qwen2DecoderLayer`, intermediate 11,008) on 750 tokens, times the
LLM's 32 layers. The paper claims the selection costs under 1% of the network's compute; goal ≤ 1%.
Run: `.venv/bin/python benchmarks/speechprune.py` (or `--width 1024 --layers 8` for a quicker look).
"""

from __future__ import annotations

import argparse

import torch

from replbook import speechprune
from replbook.measure import best_time


def decoder_layer(width: int, intermediate: int, heads: int):
    """One randomly initialised Qwen2 decoder layer and its rotary embedding (eval mode, no cache)."""
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

    config = Qwen2Config(hidden_size=width, intermediate_size=intermediate, num_attention_heads=heads,
                         num_key_value_heads=heads, num_hidden_layers=1, max_position_embeddings=32_768)
    config._attn_implementation = "sdpa"
    return Qwen2DecoderLayer(config, layer_idx=0).eval(), Qwen2RotaryEmbedding(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2200, help="speech tokens N before pruning")
    parser.add_argument("--phase1", type=int, default=750, help="Phase-1 target N1 (the model's window)")
    parser.add_argument("--prune-rate", type=float, default=0.2)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--intermediate", type=int, default=11_008)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--layers", type=int, default=32, help="decoder layers of the LLM")
    parser.add_argument("--query", type=int, default=20, help="question tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    speech = torch.randn(1, args.tokens, args.width)
    text = torch.randn(1, args.query, args.width)
    w_q, w_k = torch.randn(args.width, args.width), torch.randn(args.width, args.width)

    def select():
        return speechprune.speechprune_select(speech, text, w_q, w_k, args.phase1, args.prune_rate,
                                              num_heads=args.heads)

    signs = speechprune.binarize_weight(w_q), speechprune.binarize_weight(w_k)  # once, at model load

    def select_prebinarized():
        return speechprune.speechprune_select(speech, text, *signs, args.phase1, args.prune_rate,
                                              num_heads=args.heads, weights_binarized=True)

    layer, rotary = decoder_layer(args.width, args.intermediate, args.heads)
    hidden = torch.randn(1, args.phase1, args.width)
    positions = torch.arange(args.phase1)[None]

    @torch.no_grad()
    def forward():
        return layer(hidden, position_embeddings=rotary(hidden, positions), position_ids=positions)

    assert torch.equal(select(), select_prebinarized())
    t_select = best_time(select, args.repeats)
    t_pre = best_time(select_prebinarized, args.repeats)
    t_layer = best_time(forward, args.repeats)
    network = t_layer * args.layers
    kept = select().shape[1]
    print(f"speech tokens {args.tokens} → Phase 1 {args.phase1} → kept {kept} (PR {args.prune_rate}); width "
          f"{args.width}, {args.heads} heads; {torch.get_num_threads()} threads")
    print(f"selection (both phases): {1e3 * t_select:.1f} ms")
    print(f"one decoder layer on {args.phase1} tokens: {1e3 * t_layer:.1f} ms; × {args.layers} layers = "
          f"{1e3 * network:.1f} ms")
    print(f"selection with the weights binarized once at load: {1e3 * t_pre:.1f} ms")
    for name, t in (("binarizing per call", t_select), ("binarized at load", t_pre)):
        print(f"selection / network, {name}: {t / network:.4f} ({100 * t / network:.2f}%; paper: < 1%, goal ≤ 1%)")


if __name__ == "__main__":
    main()
