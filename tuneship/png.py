"""One way to write a chart: every stage draws its own figure, and this writes it as a PNG (aside, then renamed,
so a reader never sees half a file) or reports that matplotlib is missing (the client extra does not pull it:
tables are still written)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def save_png(figure: Callable[[], Any], path: Path) -> bool:
    """Draw `figure()` (a matplotlib Figure) into `path`; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = figure()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(temporary, format="png")
        os.replace(temporary, path)
    finally:
        plt.close(fig)
        temporary.unlink(missing_ok=True)
    return True
