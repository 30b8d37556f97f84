"""The harness's console output: progress lines printed above any running progress bar."""

from __future__ import annotations

import sys

from tqdm import tqdm


def say(msg: str) -> None:
    tqdm.write(msg, file=sys.stdout)
