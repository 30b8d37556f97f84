"""The end model's configuration, apart from the model (as peft keeps ``config.py`` apart
from ``model.py``): plain values that the service's settings take their defaults from,
importable without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LENGTH = 48
"""Tokens per utterance (customer-service turns are short; 48 covers BANKING77's longest)."""
PRECISIONS = ("auto", "bfloat16", "float32")
PRECISION = "auto"
"""Number format of the end model's forward passes: ``bfloat16`` (autocast, with the
frozen encoder's linear weights stored in it; LoRA and head weights, pooling and
embeddings stay float32), ``float32``, or ``auto``: bfloat16 where the CPU has native bf16
instructions (AVX512-BF16, AMX), float32 elsewhere. On this project's 2-core CPU
(``ecc bench precision --data ../shared/datasets/banking77``) bf16 embeds 1.65x faster
with BANKING77 test accuracy unchanged (92.95 % both; cosine to float32 >= 0.99997)."""
POOL_LAYERS = 6
"""Top encoder layers whose mean-pooled outputs the intent head reads, each L2-normalised,
concatenated and scaled by ``1/sqrt(n)`` so the whole is unit-norm (1: the sentence
embedding alone; more than the encoder has: all of them). A linear head over the layers
together is a better classifier than over the last alone: frozen MiniLM with
scikit-learn's ``LogisticRegression`` on the full train splits, BANKING77 93.6 % with all
six layers against 92.95 % with the last, CLINC150 96.4 % against 95.6 %. The cost is a
head and an example memory six times as wide; what a turn carries to the drift monitor
stays the sentence embedding."""
LENGTH_BUCKET = 16
"""Utterances per forward pass of inference, sorted by length first so that short turns
are not padded to a long one (a random 64 of BANKING77: 1.4-1.75x the utterances/s of one
padded batch; across a sorted memory, buckets of 16 and of 64 are equally fast)."""
HEAD_SCALE = 20.0
"""The intent head's logit scale over cosine similarities (``logits = scale * e @ W.T + b``):
a registry version stores ``W``, the logit weights divided by it."""
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
