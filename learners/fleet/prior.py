"""The fleet prior: what the cloud hands every node, and how it is stored in a registry.

A prior holds a head as logit weights over unit-norm embeddings (``logits = e @ W.T + b``,
the form :meth:`models.end_model.EndModel.head_logits` gives) over the union of the fleet's
intents, how many labelled examples of each intent stood behind it, which node versions
went into it, and, when some contributors consolidated LoRA, one merged adapter.

It is stored like a node version, under the registry's reserved id
:data:`models.registry.FLEET_ID` (node ids cannot start with ``_``): safetensors weights,
counts and contributors in the manifest, no text anywhere.

>>> import numpy as np
>>> p = FleetPrior(["a", "b"], np.eye(2, 3, dtype=np.float32), np.zeros(2, np.float32),
...                {"a": 5, "b": 7}, {"store-1": 3})
>>> q = FleetPrior.from_tensors(p.tensors(), p.labels, p.extra())
>>> q.counts, q.contributors, bool((q.weight == p.weight).all())
({'a': 5, 'b': 7}, {'store-1': 3}, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.end_model import LORA_PREFIX, lora_state
from models.lora import A_SUFFIX, B_SUFFIX, PEFT_PREFIX

Array = np.ndarray[Any, Any]
HEAD_WEIGHT = "prior.weight"
HEAD_BIAS = "prior.bias"


@dataclass(frozen=True)
class FleetPrior:
    """A fleet prior. ``lora`` maps each target module to ``(A, B)`` with the LoRA
    ``scaling`` already folded into ``B`` (so the module's update is ``B @ A``)."""

    labels: list[str]
    weight: Array
    bias: Array
    counts: dict[str, int]
    contributors: dict[str, int]
    """node id -> the version of it that went into this prior."""
    lora: dict[str, tuple[Array, Array]] | None = None
    version: int = 0
    excluded: dict[str, str] = field(default_factory=dict)
    """node id -> why its version was left out."""

    def __post_init__(self) -> None:
        if self.weight.shape[0] != len(self.labels) or self.bias.shape != (len(self.labels),):
            raise ValueError(f"a head of shape {self.weight.shape} for {len(self.labels)} labels")

    def rows(self, labels: list[str]) -> tuple[Array, Array]:
        """The head's rows (weights, biases) of ``labels``, in that order."""
        index = [self.labels.index(label) for label in labels]
        return self.weight[index], self.bias[index]

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            HEAD_WEIGHT: torch.from_numpy(np.ascontiguousarray(self.weight, np.float32)),
            HEAD_BIAS: torch.from_numpy(np.ascontiguousarray(self.bias, np.float32)),
        }
        for name, (a, b) in (self.lora or {}).items():  # named as a node version's are
            key = LORA_PREFIX + PEFT_PREFIX + name
            out[key + A_SUFFIX] = torch.from_numpy(np.ascontiguousarray(a))
            out[key + B_SUFFIX] = torch.from_numpy(np.ascontiguousarray(b))
        return out

    def extra(self) -> dict[str, Any]:
        """What the manifest keeps beside the weights: counts and contributors."""
        return {
            "counts": dict(self.counts),
            "contributors": dict(self.contributors),
            "excluded": dict(self.excluded),
        }

    @classmethod
    def from_tensors(
        cls,
        tensors: dict[str, torch.Tensor],
        labels: list[str],
        extra: dict[str, Any],
        version: int = 0,
    ) -> FleetPrior:
        a, b = lora_state(tensors)
        return cls(
            labels=list(labels),
            weight=tensors[HEAD_WEIGHT].float().numpy(),
            bias=tensors[HEAD_BIAS].float().numpy(),
            counts={k: int(v) for k, v in extra.get("counts", {}).items()},
            contributors={k: int(v) for k, v in extra.get("contributors", {}).items()},
            lora={k: (a[k].float().numpy(), b[k].float().numpy()) for k in sorted(a)} or None,
            version=version,
            excluded=dict(extra.get("excluded", {})),
        )
