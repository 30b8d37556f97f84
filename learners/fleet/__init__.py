"""Fleet learning: what one node learns reaches the others as weights and counts, never text.

- :mod:`learners.fleet.prior`: the fleet prior (a head over the union of intents, an
  optional LoRA adapter, per-intent example counts) and how it is stored.
- :mod:`learners.fleet.aggregate`: node versions in, one prior out (pure arithmetic).
- :mod:`learners.fleet.privacy`: optional clipping and Gaussian noise of what is averaged.
- :mod:`learners.fleet.aggregator`: the cloud side over a registry: which node versions
  count, one round, the prior published.

A node adopts a prior only through its own gate (:meth:`learners.edge_node.EdgeNode.adopt`).
"""
