"""LoRA training of an end model over labelled texts: the learner's slow path.

Each step draws ``max_batch`` examples at random from the texts it is given (the node's
class-balanced example memory, so every intent is in the draw and a drifting one cannot
crowd out the rest). Unknown labels first grow the head (rows at their examples'
centroid). A step that turns the loss or any weight non-finite stops training and the
update is refused (:class:`TrainingGuardError`): a NaN model scores NaN, which a gate
might wave through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from learners.options import TrainOptions
from models.end_model import EndModel


class TrainingGuardError(ValueError):
    """A batch the trainer refuses to apply (the reason is the message)."""


@dataclass(frozen=True)
class TrainReport:
    steps: int
    examples: int
    loss_first: float
    loss_last: float
    seconds: float
    labels_added: list[str]


class IncrementalTrainer:
    """Trains an :class:`EndModel`'s LoRA and head in place."""

    def __init__(self, model: EndModel, options: TrainOptions = TrainOptions()) -> None:
        self.model = model
        self.options = options
        self._generator = torch.Generator().manual_seed(options.seed)
        self._runs = 0

    def train(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        stop: Callable[[], bool] = lambda: False,
    ) -> TrainReport:
        """``options.steps`` AdamW steps, each on a fresh random draw from ``texts``; fewer
        if ``stop()`` turns true (checked before every step)."""
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
        self._runs += 1
        torch.manual_seed(self.options.seed + self._runs)
        # only the new intents' texts: their rows start at those texts' centroid
        new = [i for i, y in enumerate(labels) if y in fresh]
        added = self.model.add_labels([texts[i] for i in new], [labels[i] for i in new])
        params = self.model.trainable_parameters()
        optimiser = torch.optim.AdamW(params, lr=self.options.learning_rate, weight_decay=0.0)
        losses: list[float] = []
        # The encoder stays in eval mode (no dropout): it is shared with serving.
        for _ in range(self.options.steps):
            if stop():
                break
            xs, ys = self._draw(texts, labels)
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
        broken = [i for i, p in enumerate(params) if not torch.isfinite(p).all()]
        if broken:
            raise TrainingGuardError(
                f"{len(broken)} weight tensors became NaN or infinite: batch not applied"
            )
        return TrainReport(
            steps=len(losses),
            examples=len(texts),
            loss_first=losses[0] if losses else float("nan"),
            loss_last=losses[-1] if losses else float("nan"),
            seconds=time.perf_counter() - start,
            labels_added=added,
        )

    def _draw(self, texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
        n = len(texts)
        if n > self.options.max_batch:
            idx = torch.randperm(n, generator=self._generator)[: self.options.max_batch].tolist()
        else:
            idx = list(range(n))
        return [texts[i] for i in idx], [labels[i] for i in idx]
