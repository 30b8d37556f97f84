"""The simulated clients: what a customer-service client says about an answer (a label, a
thumbs up or down, or nothing), decided per turn by a seeded hash so runs repeat."""

from __future__ import annotations

import random
import zlib

DEMO_CLIENT = "demo"


def client_feedback(
    seed: int, turn_id: str, served: str, truth: str, label_rate: float, thumbs_rate: float
) -> str | None:
    """What a simulated client says about an answer, decided per turn by a seeded hash: a
    label for ``label_rate`` of turns (a thumbs-up when the answer was right, else a
    correction), a thumbs up or down for ``thumbs_rate`` more, nothing otherwise."""
    r = random.Random(zlib.crc32(f"{seed}:{turn_id}".encode())).random()
    right = served == truth
    if r < label_rate:
        return "thumbs_up" if right else "correction"
    if r < label_rate + thumbs_rate:
        return "thumbs_up" if right else "thumbs_down"
    return None
