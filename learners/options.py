"""The edge learner's configuration, apart from the learner: plain values, importable
without loading torch, so the service's settings can take their defaults from here (every
default is written once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from learners.gate import EvalGate
from models.options import MAX_LENGTH, LoraOptions


@dataclass(frozen=True)
class TrainOptions:
    learning_rate: float = 3e-3
    steps: int = 4
    replay_sample: int = 32
    max_batch: int = 64
    seed: int = 7
    max_new_intents: int = 5  # more new intents than this in one update is implausible


@dataclass(frozen=True)
class EdgeOptions:
    encoder_path: str | None = None
    lora: LoraOptions = LoraOptions()
    max_length: int = MAX_LENGTH
    train: TrainOptions = TrainOptions()
    replay_per_class: int = 32
    holdout_every: int = 5
    holdout_per_class: int = 20
    holdout_max: int = 300
    gate: EvalGate = field(default_factory=EvalGate)
