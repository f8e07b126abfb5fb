"""Offline text corpora and the word-level tokenizer of the language-model miniatures.

Two stdlib corpora, identical on every machine with the same Python:
- ``pydoc_topics``: the 79 reference-manual topics of ``pydoc_data.topics`` (~465k characters);
- ``stdlib_docstrings``: module, class and function docstrings parsed with ``ast`` from the stdlib sources,
  a same-domain but disjoint text for reference models.
Both are materialised as files by :mod:`replbook.assets` (provider ``generator``) and checked by sha256.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

#: Words (with apostrophes), numbers, or any single non-space symbol.
TOKEN_PATTERN = re.compile(r"[A-Za-z_][A-Za-z_0-9']*|\d+|[^\sA-Za-z_0-9]")
UNK = "<unk>"


def write_pydoc_topics(path: Path) -> None:
    """Write every ``pydoc_data.topics`` entry, sorted by name, separated by blank lines."""
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    path.write_text("\n\n".join(topics[name].strip() for name in sorted(topics)) + "\n", encoding="utf-8")


def write_stdlib_docstrings(path: Path, max_chars: int = 1_200_000) -> None:
    """Write the docstrings of the stdlib's top-level modules in sorted order, up to ``max_chars``.

    Tests, IDLE, lib2to3, site-packages and the pydoc topics themselves are skipped (the latter keeps this corpus
    disjoint from ``pydoc_topics``).
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "idlelib", "lib2to3", "site-packages", "pydoc_data", "turtledemo", "tkinter", "ensurepip"}
    files = sorted(p for p in stdlib.rglob("*.py") if not (set(p.relative_to(stdlib).parts) & skip))
    chunks, total = [], 0
    for file in files:
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) > 80:
                chunks.append(doc.strip())
                total += len(doc)
        if total >= max_chars:
            break
    path.write_text("\n\n".join(chunks) + "\n", encoding="utf-8")


def tokenize_words(text: str) -> list[str]:
    """Split text into word, number and punctuation tokens (case kept)."""
    return TOKEN_PATTERN.findall(text)


@dataclass(frozen=True)
class WordVocab:
    """A top-k word vocabulary; id 0 is ``<unk>``."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, tokens: Iterable[str], size: int) -> WordVocab:
        if size < 2:
            raise ValueError(f"vocabulary size must be at least 2; got {size}.")
        counts = Counter(tokens)
        # Ties broken alphabetically so the vocabulary is the same on every run.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: size - 1]
        return cls((UNK, *(w for w, _ in ranked)))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> torch.Tensor:
        index = {w: i for i, w in enumerate(self.words)}
        return torch.tensor([index.get(t, 0) for t in tokens], dtype=torch.long)


@dataclass(frozen=True)
class TokenChunks:
    """Non-overlapping chunks of a token stream: ids [N, L] and the original text of each chunk."""

    ids: torch.Tensor
    texts: list[str]


def chunk_tokens(tokens: Sequence[str], vocab: WordVocab, length: int, max_chunks: int | None = None) -> TokenChunks:
    """Cut a token stream into consecutive chunks of ``length`` tokens (the tail is dropped)."""
    n = len(tokens) // length
    if max_chunks is not None:
        n = min(n, max_chunks)
    if n == 0:
        raise ValueError(f"the corpus has {len(tokens)} tokens, fewer than one chunk of {length}.")
    ids = vocab.encode(tokens[: n * length]).view(n, length)
    texts = [" ".join(tokens[i * length : (i + 1) * length]) for i in range(n)]
    return TokenChunks(ids, texts)
