"""The cloud side of fleet learning over a registry: which node versions count, one round.

A round reads every node's serving version from the registry (weights, labels, the
per-intent example counts its manifest records: no text is ever there), leaves out the
nodes whose held-out accuracy fell, aggregates the rest (:func:`aggregate`) and publishes
the prior under :data:`models.registry.FLEET_ID`. Rows a node serves without examples of
its own (borrowed from an earlier prior) are not its contribution: counting them would feed
the prior back to itself.

>>> import tempfile
>>> from pathlib import Path
>>> import torch
>>> from models.registry import AdapterRegistry
>>> reg = AdapterRegistry(Path(tempfile.mkdtemp()))
>>> head = {"head.weight": torch.eye(2, 4), "head.bias": torch.zeros(2)}
>>> counts = {"intent_counts": {"a": 4, "b": 2}}
>>> _ = reg.publish("store-1", head, ["a", "b"], "tiny", None, extra=counts)
>>> fleet = FleetAggregator(reg)
>>> prior = fleet.round()
>>> prior.version, prior.labels, prior.counts
(1, ['a', 'b'], {'a': 4, 'b': 2})
>>> fleet.round() is None  # nothing published since
True
"""

from __future__ import annotations

import dataclasses

from learners.fleet.aggregate import Contribution, aggregate
from learners.fleet.prior import FleetPrior
from learners.fleet.privacy import Privacy
from learners.options import FleetOptions
from models.end_model import logit_head, lora_factors
from models.options import LoraOptions
from models.registry import FLEET_ID, AdapterRegistry, VersionInfo

COUNTS = "intent_counts"
"""The manifest entry (``extra``) of a node version: labelled examples per intent of its
own behind the head."""


class FleetAggregator:
    def __init__(
        self,
        registry: AdapterRegistry,
        options: FleetOptions | None = None,
        lora: LoraOptions | None = None,
    ) -> None:
        self.registry = registry
        self.options = options = options or FleetOptions()
        self.lora = lora or LoraOptions()
        self.privacy = Privacy(options.clip, options.noise)
        latest = registry.current(FLEET_ID)
        self._last: dict[str, int] = dict(latest.extra.get("seen", {})) if latest else {}
        self._rounds = latest.version if latest else 0

    def contribution(self, info: VersionInfo) -> Contribution | None:
        """A node version as the fleet sees it (None: it has no intent of its own)."""
        _, tensors = self.registry.load(info.node_id, info.version)
        weight, bias = logit_head(tensors)
        # a version from before counts were kept: one example each
        counts = {
            k: int(v) for k, v in info.extra.get(COUNTS, dict.fromkeys(info.labels, 1)).items()
        }
        own = [i for i, label in enumerate(info.labels) if counts.get(label, 0) > 0]
        if not own:
            return None
        return Contribution(
            info.node_id,
            info.version,
            [info.labels[i] for i in own],
            weight[own],
            bias[own],
            {info.labels[i]: counts[info.labels[i]] for i in own},
            lora_factors(tensors, self.lora),
        )

    def fell(self, info: VersionInfo) -> str | None:
        """Why this version is left out (its held-out accuracy fell), or None."""
        tolerance = self.options.fall_tolerance
        now = info.metrics.get("holdout_accuracy")
        if now is None:
            return None
        before = info.metrics.get("holdout_accuracy_before")
        if before is not None and before - now > tolerance:
            return f"held-out accuracy fell {before:.3f} -> {now:.3f} in v{info.version}"
        return None

    def round(self, force: bool = False) -> FleetPrior | None:
        """Aggregate the nodes' serving versions and publish the prior; None if no node
        published since the last round (unless ``force``) or none can contribute."""
        serving = {n: v for n in self.registry.nodes() if (v := self.registry.current(n))}
        if not force and {n: v.version for n, v in serving.items()} == self._last:
            return None
        contributions, excluded = [], {}
        for node_id, info in sorted(serving.items()):
            reason = self.fell(info)
            if reason is not None:
                excluded[node_id] = reason
                continue
            contribution = self.contribution(info)
            if contribution is not None:
                contributions.append(contribution)
        self._last = {n: v.version for n, v in serving.items()}
        if not contributions:
            return None
        prior = aggregate(
            contributions, self.options.rank, self.privacy, seed=self._rounds, excluded=excluded
        )
        published = self.registry.publish(
            FLEET_ID,
            prior.tensors(),
            prior.labels,
            base_model=next(iter(serving.values())).base_model,
            parent=self._rounds or None,
            metrics={"nodes": float(len(contributions)), "excluded": float(len(excluded))},
            extra={**prior.extra(), "seen": self._last},
        )
        self._rounds = published.version
        return dataclasses.replace(prior, version=published.version)


def latest_prior(registry: AdapterRegistry) -> FleetPrior | None:
    """The newest fleet prior in ``registry`` (None before the first round)."""
    info = registry.current(FLEET_ID)
    if info is None:
        return None
    _, tensors = registry.load(FLEET_ID, info.version)
    return FleetPrior.from_tensors(tensors, info.labels, info.extra, info.version)
