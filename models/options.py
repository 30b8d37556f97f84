"""The end model's configuration, apart from the model (as peft keeps ``config.py`` apart
from ``model.py``): plain values that the service's settings take their defaults from,
importable without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LENGTH = 48
"""Tokens per utterance (customer-service turns are short; 48 covers BANKING77's longest)."""
KEEP_VERSIONS = 20
"""Adapter versions the registry keeps per node."""
TEACHER_TIMEOUT_S = 10.0
"""Seconds one request to an OpenAI-compatible teacher may take."""
TEACHER_RETRIES = 3
"""Retries (exponential backoff) of a failed teacher request."""


@dataclass(frozen=True)
class LoraOptions:
    r: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("query", "value")
    dropout: float = 0.0
