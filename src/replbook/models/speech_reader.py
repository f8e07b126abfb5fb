"""The SpeechPrune miniature's "speech LLM": a projector from speech-encoder states into a small reader's word
embedding space, and the reader, a few transformer layers over [speech tokens][question] that score four choices.

Its speech position table holds ``b_max`` tokens only: the analogue of Qwen2-Audio's 30-s window, so a longer
passage must be truncated ("Original") or pruned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpeechReader(nn.Module):
    def __init__(self, vocab_size: int, encoder_dim: int, d_model: int = 128, layers: int = 2, heads: int = 4,
                 b_max: int = 128, max_text: int = 32):
        super().__init__()
        self.b_max, self.max_text = b_max, max_text
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)  # the text side: question and choices
        self.projector = nn.Linear(encoder_dim, d_model)  # speech states → the text-embedding space
        self.pos_speech = nn.Embedding(b_max, d_model)
        self.pos_text = nn.Embedding(max_text, d_model)
        self.kind = nn.Embedding(2, d_model)  # 0 speech, 1 text
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def project(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder states [..., encoder_dim] → speech tokens [..., d_model] (what SpeechPrune prunes)."""
        return self.projector(states)

    def first_layer_qk(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_Q and W_K [d, d] of the first layer (nn.Linear layout), for SpeechPrune's Phase 2."""
        w = self.blocks.layers[0].self_attn.in_proj_weight
        d = w.shape[1]
        return w[:d].detach(), w[d : 2 * d].detach()

    def word_logits(self, tokens: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
        """Cosine similarities of speech tokens [..., d] with every word embedding, over a temperature: the alignment
        head, [..., vocab]. Training it makes a spoken word's tokens point the way of that word's embedding, which is
        the property Phase 1's cosine relevance relies on."""
        return F.normalize(tokens, dim=-1) @ F.normalize(self.embed.weight, dim=-1).T / temperature

    def forward(self, speech: torch.Tensor, speech_mask: torch.Tensor, question: torch.Tensor,
                choices: torch.Tensor) -> torch.Tensor:
        """speech [B, S ≤ b_max, d] with mask [B, S]; question ids [B, L]; choices ids [B, 4, C] (0 = padding)
        → choice logits [B, 4]."""
        b, s, _ = speech.shape
        if s > self.b_max:
            raise ValueError(f"{s} speech tokens exceed the reader's window of {self.b_max}; prune or truncate.")
        if question.shape[1] > self.max_text:
            raise ValueError(f"the question has {question.shape[1]} tokens; the reader takes {self.max_text}.")
        device = speech.device
        x_speech = speech + self.pos_speech(torch.arange(s, device=device)) + self.kind.weight[0]
        x_text = (self.embed(question) + self.pos_text(torch.arange(question.shape[1], device=device))
                  + self.kind.weight[1])
        x = torch.cat([x_speech, x_text], dim=1)
        valid = torch.cat([speech_mask, question != 0], dim=1)
        h = self.norm(self.blocks(x, src_key_padding_mask=~valid))
        pooled = (h * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1)
        choice_mask = (choices != 0)[..., None].float()
        choice_emb = (self.embed(choices) * choice_mask).sum(2) / choice_mask.sum(2).clamp_min(1)
        return torch.einsum("bkd,bd->bk", F.normalize(choice_emb, dim=-1), pooled)
