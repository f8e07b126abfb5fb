"""Offline speech for the SpeechPrune chapter: Debian's espeak-ng synthesises text into 16-kHz audio, cached as WAV
files by content hash (text, voice, rate, pitch)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from replbook.paths import cache_dir

SAMPLE_RATE = 16_000


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise FileNotFoundError("espeak-ng is not installed; install it with `apt-get install espeak-ng` "
                                "(`make setup` does).")
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM WAV → float32 samples in [−1, 1] and the sample rate."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono 16-bit PCM.")
        frames = handle.readframes(handle.getnframes())
        return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, handle.getframerate()


def synthesize(text: str, voice: str = "en-us", rate: int = 170, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by espeak-ng at ``rate`` words per minute, as float32 samples at 16 kHz (cached)."""
    if not text.strip():
        raise ValueError("text must not be empty.")
    key = hashlib.sha256(f"{voice}|{rate}|{pitch}|{text}".encode()).hexdigest()[:24]
    folder = cache_dir() / "speech"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.wav"
    if not path.exists():
        tmp = path.with_suffix(".partial")
        subprocess.run([_espeak(), "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(tmp), text],
                       check=True, capture_output=True)
        tmp.replace(path)
    samples, sr = read_wav(path)
    if sr == SAMPLE_RATE:
        return samples
    g = np.gcd(sr, SAMPLE_RATE)
    return resample_poly(samples, SAMPLE_RATE // g, sr // g).astype(np.float32)
