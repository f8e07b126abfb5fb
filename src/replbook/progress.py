"""Progress bars for long loops: tqdm's text bars on stderr.

Not ``tqdm.auto``'s widget bars: they need ipywidgets, whose saved outputs make the rendered book load widget
JavaScript from a CDN. Text bars work in a terminal, in Jupyter and under papermill; the book hides stderr
(``nb_output_stderr: remove`` in ``_config.yml``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.std import tqdm


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` writing to stderr, refreshed at most twice a second."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, **kwargs)
