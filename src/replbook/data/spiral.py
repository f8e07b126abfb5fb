"""SPIRAL (linyueqian/SPIRAL_Dataset): the SpeechPrune paper profile's benchmark, from a local copy."""

from __future__ import annotations

import json
from pathlib import Path

from replbook.assets import AssetUnavailable


def load_spiral(folder, limit: int | None = None, audio_pattern: str = "audio/{id}.wav") -> list[dict]:
    """SPIRAL items from a local copy of linyueqian/SPIRAL_Dataset (``data.jsonl``) and its audio (not in git; the
    file naming ``audio_pattern`` is our assumption: adjust it to the downloaded layout)."""
    folder = Path(folder)
    rows_path = folder / "data.jsonl"
    if not rows_path.exists():
        raise AssetUnavailable(f"{rows_path} is missing; clone linyueqian/SPIRAL_Dataset into $REPLBOOK_SPIRAL "
                               f"(data_manifests/spiral.yaml).")
    items = []
    for line in rows_path.read_text().splitlines()[:limit]:
        row = json.loads(line)
        test = row["test_question"]
        choices = [c.split(". ", 1)[1] if c[:2] in ("A.", "B.", "C.", "D.") else c for c in test["choices"]]
        items.append({"id": row["metadata"]["id"], "question": test["question"], "choices": choices,
                      "answer": test["choices"].index(test["correct_answer"]),
                      "audio": folder / audio_pattern.format(id=row["metadata"]["id"])})
    return items


