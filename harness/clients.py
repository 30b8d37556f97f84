"""The simulated clients: what a customer-service client says about an answer (a label, a
thumbs up or down, or nothing), decided per turn by a seeded hash so runs repeat; and a
client that hands labelled examples straight to a node's learner (tests, benchmarks)."""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Sequence

from streams import topics
from streams.kafka import producer
from streams.schemas import Example, TrainingBatch
from streams.settings import Settings

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


async def send_labelled(
    settings: Settings, node: str, batch_id: str, pairs: Sequence[tuple[str, str]]
) -> TrainingBatch:
    """Post ``(text, label)`` pairs straight to ``node``'s learner as one training batch
    (what the feedback worker would emit for them); returns the batch sent."""
    batch = TrainingBatch(
        batch_id=batch_id,
        node_id=node,
        examples=[
            Example(
                example_id=f"{batch_id}-{i}",
                turn_id=f"{batch_id}-turn-{i}",
                text=text,
                label=label,
                source="feedback",
            )
            for i, (text, label) in enumerate(pairs)
        ],
        created_at=time.time(),
    )
    async with producer(settings) as p:
        await p.send_and_wait(
            settings.topic_prefix + topics.TRAINING_BATCHES, batch.dumps(), key=node.encode()
        )
    return batch
