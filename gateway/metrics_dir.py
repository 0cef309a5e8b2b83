"""Where every process of one gateway counts its metrics; set before prometheus_client loads.

prometheus_client decides at import whether it counts in memory or in files shared by many
processes, so ``gateway serve`` and ``gateway mllp`` call ``prepare`` first (this module does
not import it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(directory: str | Path) -> None:
    """Empty ``directory`` and count into it from this process and every one it starts."""
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[ENV] = str(path)
