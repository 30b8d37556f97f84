"""Incremental LoRA training: a few steps per feedback batch, mixed with replayed examples.

Replay (class-balanced, bounded) keeps old intents in every step so that a batch full of
one drifting intent does not make the model forget the others. Unknown labels first grow the
head (rows at their examples' centroid), which is what makes a new intent usable after a
handful of examples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from learners.options import TrainOptions
from learners.replay import ClassBalancedReplay
from models.end_model import EndModel


class TrainingGuardError(ValueError):
    """A batch the trainer refuses to apply (the reason is the message)."""


@dataclass(frozen=True)
class TrainReport:
    steps: int
    examples: int
    replayed: int
    loss_first: float
    loss_last: float
    seconds: float
    labels_added: list[str]


class IncrementalTrainer:
    """Applies labelled batches to an :class:`EndModel` in place."""

    def __init__(
        self, model: EndModel, replay: ClassBalancedReplay, options: TrainOptions = TrainOptions()
    ) -> None:
        self.model = model
        self.replay = replay
        self.options = options
        self._generator = torch.Generator().manual_seed(options.seed)
        self._batches = 0

    def train(self, texts: Sequence[str], labels: Sequence[str]) -> TrainReport:
        if len(texts) != len(labels) or not texts:
            raise TrainingGuardError("a batch needs as many labels as texts, and at least one")
        fresh = {y for y in labels if y not in self.model.labels}
        if len(fresh) > self.options.max_new_intents:
            raise TrainingGuardError(
                f"the batch brings {len(fresh)} new intents at once (at most "
                f"{self.options.max_new_intents} per update): an implausible label "
                "distribution, not applied"
            )
        start = time.perf_counter()
        self._batches += 1
        torch.manual_seed(self.options.seed + self._batches)
        # Intents only the replay knows (learnt by a rejected candidate) get their rows back.
        remembered = [(t, y) for t, y in self.replay.items() if y not in self.model.labels]
        added = self.model.add_labels(
            [*texts, *(t for t, _ in remembered)], [*labels, *(y for _, y in remembered)]
        )
        params = self.model.trainable_parameters()
        optimiser = torch.optim.AdamW(params, lr=self.options.learning_rate, weight_decay=0.0)
        losses: list[float] = []
        replayed = 0
        self.model.net.train()
        try:
            for _ in range(self.options.steps):
                xs, ys = self._step_examples(texts, labels)
                replayed = max(replayed, len(xs) - min(len(texts), self.options.max_batch))
                target = torch.tensor([self.model.label_index(y) for y in ys])
                loss = torch.nn.functional.cross_entropy(self.model.logits(xs), target)
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingGuardError(f"loss became {value}: batch not applied")
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimiser.step()
                losses.append(value)
        finally:
            self.model.net.eval()
        broken = [i for i, p in enumerate(params) if not torch.isfinite(p).all()]
        if broken:
            raise TrainingGuardError(
                f"{len(broken)} weight tensors became NaN or infinite: batch not applied"
            )
        return TrainReport(
            steps=len(losses),
            examples=len(texts),
            replayed=replayed,
            loss_first=losses[0],
            loss_last=losses[-1],
            seconds=time.perf_counter() - start,
            labels_added=added,
        )

    def _step_examples(
        self, texts: Sequence[str], labels: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        n = len(texts)
        if n > self.options.max_batch:
            idx = torch.randperm(n, generator=self._generator)[: self.options.max_batch].tolist()
        else:
            idx = list(range(n))
        xs = [texts[i] for i in idx]
        ys = [labels[i] for i in idx]
        for x, y in self.replay.sample(self.options.replay_sample):
            if y in self.model.labels:
                xs.append(x)
                ys.append(y)
        return xs, ys
