"""Whisper tiny.en converted from its CTranslate2 export transcribes espeak-ng speech exactly; the reader and the
synthesiser behave."""

import re
import struct

import numpy as np
import pytest

from replbook.data.speech import SAMPLE_RATE, synthesize
from replbook.models.whisper_ct2 import load_whisper_tiny_en, read_ct2, transcribe


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z ]", "", text.lower()).split()


def test_the_converted_model_transcribes_synthetic_speech_and_loads_from_the_cache(tmp_cache):
    sentence = "the committee will meet in the north hall this season"
    audio = synthesize(sentence)
    assert audio.dtype == np.float32 and 1.5 < len(audio) / SAMPLE_RATE < 5
    assert np.array_equal(audio, synthesize(sentence))  # from the WAV cache
    model, features, tokenizer = load_whisper_tiny_en()  # converts and caches
    assert words(transcribe(model, features, tokenizer, audio)) == sentence.split()
    again = load_whisper_tiny_en()[0]  # from the safetensors cache
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.state_dict().values(),
                                                                     again.state_dict().values(), strict=True))
    encoded = model.model.encoder(features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features)
    assert encoded.last_hidden_state.shape == (1, 1500, 384)  # 30 s window, 20 ms per state


def test_the_reader_refuses_an_old_format(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<I", 3))
    with pytest.raises(ValueError, match="version 3"):
        read_ct2(path)


def test_empty_text_is_refused():
    with pytest.raises(ValueError, match="text"):
        synthesize("   ")
