"""The drift monitor's state as plain data: per ``(node, intent)`` and per node, and how
each packs into a JSON-able dict.

A stream worker checkpoints this into a table and a restarted one loads it back, so every
field is a number, a string, a small dict or a vector packed as base64 little-endian
float32 (a centroid of a 384-d encoder is 2 KB of text, not 8 KB of JSON floats); a river
detector, where a setting puts one on a signal, is packed as text by
:meth:`learners.drift.detectors.RiverWatch.pack`. The
dicts are the table's record layout: changing a field name here changes what stored
checkpoints must contain.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from learners.drift.config import SIGNALS, DriftState, Vector
from learners.drift.detectors import RiverWatch
from learners.drift.stats import Moments, Rate


def pack_vector(v: Vector | None) -> str | None:
    """A vector as base64 little-endian float32: a quarter of its JSON text. Lossy (a
    restored monitor's centroids are the float32 rounding of the running one's)."""
    return None if v is None else base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()


def unpack_vector(s: str | None) -> Vector | None:
    return None if s is None else np.frombuffer(base64.b64decode(s), "<f4").astype(np.float64)


@dataclass
class IntentRecord:
    """State of one ``(node, intent)``: plain numbers and two vectors."""

    state: DriftState = DriftState.STABLE
    since: float = 0.0
    turns: int = 0
    calm: int = 0
    alarms: int = 0
    adapter: int | None = None
    adapter_since_alarm: bool = False
    version: int | None = None
    ref_sum: Vector | None = None  # embeddings summed while the centroid is learnt
    ref_n: int = 0
    centroid: Vector | None = None
    distance: Moments = field(default_factory=Moments)
    confidence: Moments = field(default_factory=Moments)
    low_conf: Rate = field(default_factory=Rate)
    error: Rate = field(default_factory=Rate)
    share: Rate = field(default_factory=Rate)
    share_from: int = 0  # node turn count when the intent was first seen
    cusum: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0.0))
    recent: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0.0))
    river: dict[str, RiverWatch] = field(default_factory=dict)  # signal -> its river detector

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, river={}))
        data["state"] = self.state.value
        data["ref_sum"] = pack_vector(self.ref_sum)
        data["centroid"] = pack_vector(self.centroid)
        data["river"] = {k: [w.name, w.pack()] for k, w in self.river.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntentRecord:
        return cls(
            **{
                **data,
                "state": DriftState(data["state"]),
                "ref_sum": unpack_vector(data["ref_sum"]),
                "centroid": unpack_vector(data["centroid"]),
                "distance": Moments(**data["distance"]),
                "confidence": Moments(**data["confidence"]),
                "low_conf": Rate(**data["low_conf"]),
                "error": Rate(**data["error"]),
                "share": Rate(**data["share"]),
                # checkpoints from before river's detectors have none
                "river": {
                    k: RiverWatch.unpack(name, text)
                    for k, (name, text) in data.get("river", {}).items()
                },
            }
        )


@dataclass
class NodeRecord:
    """Pooled in-control rates of a node (the prior of its intents' references)."""

    turns: int = 0
    low_conf: Rate = field(default_factory=lambda: Rate(2.0, 20.0))
    error: Rate = field(default_factory=lambda: Rate(2.0, 20.0))
    offsets: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeRecord:
        return cls(
            turns=data["turns"],
            low_conf=Rate(**data["low_conf"]),
            error=Rate(**data["error"]),
            offsets=dict(data["offsets"]),
        )
