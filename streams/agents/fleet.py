"""Fleet agent (``ecc serve --roles fleet``): adapters.events -> a fleet prior -> fleet.priors.

It follows ``adapters.events``; once a node has published (or rolled back) since the last
round, and at most every ``ECC_FLEET_INTERVAL_S``, it aggregates every node's serving
version in the registry into a fleet prior (:class:`learners.fleet.aggregator.FleetAggregator`:
weights and per-intent counts only), writes it to the registry under ``_fleet``, and sends
one :class:`~streams.schemas.FleetPriorReady` per node on ``fleet.priors``, keyed by the
node, so the edge worker that owns a node hears of it. Whether a node serves any of it is
that node's own gate's decision (:meth:`learners.edge_node.EdgeNode.adopt`).

It keeps no state of its own: after a restart the first round reads the registry again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from learners.fleet.aggregator import FleetAggregator
from learners.fleet.prior import FleetPrior
from streams import metrics, topics
from streams.context import Context
from streams.schemas import AdapterEvent, FleetPriorReady

log = logging.getLogger("ecc.fleet")
MOVES = ("published", "rolled_back")  # adapters.events statuses that change a served version


def register(ctx: Context) -> None:
    s = ctx.settings
    aggregator = FleetAggregator(ctx.registry, s.fleet_options(), s.edge_options().lora)
    due = {"round": True, "last": 0.0}  # a round at start: the registry may have moved

    @ctx.app.agent(ctx.topic(topics.ADAPTERS_EVENTS), name="fleet-follow")
    async def follow(stream: Any) -> None:
        async for event in stream.events():
            record = await ctx.decode(event, AdapterEvent, owner=False)
            if record is not None and record.status in MOVES:
                due["round"] = True

    @ctx.app.timer(interval=min(1.0, s.fleet_interval_s))
    async def aggregate() -> None:
        now = time.monotonic()
        if not due["round"] or now - due["last"] < s.fleet_interval_s:
            return
        due["round"], due["last"] = False, now
        started = time.perf_counter()
        prior = await ctx.run(ctx.load_pool, aggregator.round)  # registry reads
        metrics.FLEET_ROUND_SECONDS.observe(time.perf_counter() - started)
        if prior is not None:
            await announce(ctx, prior)


async def announce(ctx: Context, prior: FleetPrior) -> None:
    """The prior's metrics, and its record on fleet.priors for every node."""
    metrics.FLEET_ROUNDS.inc()
    metrics.FLEET_PRIOR_VERSION.set(prior.version)
    metrics.FLEET_NODES.labels("yes").set(len(prior.contributors))
    metrics.FLEET_NODES.labels("no").set(len(prior.excluded))
    log.info(
        "fleet prior v%d: %d intents from %d nodes%s",
        prior.version,
        len(prior.labels),
        len(prior.contributors),
        f", left out: {prior.excluded}" if prior.excluded else "",
    )
    for node_id in ctx.registry.nodes():
        ready = FleetPriorReady(
            node_id=node_id,
            version=prior.version,
            intents=len(prior.labels),
            contributors=prior.contributors,
            ts=time.time(),
        )
        await ctx.send(topics.FLEET_PRIORS, ready, key=node_id)
