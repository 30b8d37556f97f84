"""The edge learner's configuration, apart from the learner: plain values, importable
without loading torch, so the service's settings can take their defaults from here (every
default is written once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from learners.gate import EvalGate
from models.options import MAX_LENGTH, POOL_LAYERS, PRECISION, LoraOptions

RESIDENT_NODES = 2000
"""Nodes a worker keeps in memory at most (least recently used let go first; a resident
serving node costs its adapter and head, ``ecc bench nodes``)."""
RESIDENT_MIB = 0
"""MiB of node state (adapters, heads, loaded memories) a worker keeps at most (0: no
bound but the count)."""
LEARNING_NODES = 8
"""Nodes whose example memory and held-out set stay loaded after they learn (the most
recently taught); others read theirs from their files when they next learn."""


@dataclass(frozen=True)
class TrainOptions:
    """LoRA consolidation (the learner's slow path)."""

    learning_rate: float = 3e-3
    steps: int = 100
    """AdamW steps of one consolidation, each on ``max_batch`` examples drawn from the
    memory."""
    max_batch: int = 64
    seed: int = 7
    max_new_intents: int = 5  # more new intents than this in one update is implausible


@dataclass(frozen=True)
class EdgeOptions:
    encoder_path: str | None = None
    lora: LoraOptions = LoraOptions()
    max_length: int = MAX_LENGTH
    precision: str = PRECISION
    """Number format of the forward passes (:data:`models.options.PRECISION`)."""
    pool_layers: int = POOL_LAYERS
    """Encoder layers the head reads (:data:`models.options.POOL_LAYERS`)."""
    early_layers_weight: float = 0.1
    """The head's L2 penalty as if every pooled layer but the last were scaled by this
    (and the features renormalised; :func:`learners.head_fit.layer_prior`) in the row of
    an intent with few examples: it leans on the sentence embedding, which generalises
    better from a few labels. 1: all layers alike in every row (the prior off)."""
    early_layers_full_at: int = 150
    """Examples of an intent at which its row weighs every layer alike: the weight rises
    from :attr:`early_layers_weight` as examples / this
    (:func:`learners.head_fit.row_layer_prior`); 0: every row at
    :attr:`early_layers_weight`. Measured on BANKING77 (test accuracy of the head, C=50,
    from 10 seeds per intent plus the first N streamed labels; all layers alike / this
    prior): N=0 80.6 / 83.7 %, 1,000 85.1 / 87.8, 3,000 89.2 / 90.4, all 93.4 / 93.7;
    CLINC150 91.7 / 91.6, 92.5 / 92.6, 93.4 / 93.3, 96.5 / 96.6 (full_at 100 or 200:
    within 0.5 point; README, the learner section)."""
    train: TrainOptions = TrainOptions()
    holdout_every: int = 5
    """Every n-th labelled example (by a hash of its id) is held out for the gate."""
    holdout_per_class: int = 20
    """Held-out examples kept per intent (all are scored: on cached embeddings it is free)."""
    memory_per_class: int = 256
    """Labelled examples kept per intent, with their embeddings, for the head's refit."""
    head_c: float = 50.0
    """Inverse regularisation of the head's refit, as scikit-learn's ``C``
    (:mod:`learners.head_fit`), measured over frozen MiniLM's six pooled layers
    (:data:`models.options.POOL_LAYERS`): 3-fold cross-validation of scikit-learn's
    ``LogisticRegression`` on the train splits is flat (BANKING77 C=20 92.13 %, 50 92.14 %,
    100 92.08 %; CLINC150 20 97.61 %, 50 97.57 %), and the node's own protocol (a head on
    the train split less 20 held-out examples per intent, then refitted with them) favours
    the larger: BANKING77 test 93.38 % at 20, 93.57 % at 60; CLINC150 96.60 % at 20, 96.64 %
    at 50. Over the last layer alone the best is 10."""
    head_max_iter: int = 100
    """L-BFGS iterations of one refit at most (warm-started, it stops far sooner)."""
    head_tolerance: float = 3e-5
    """The refit stops once no gradient entry is larger. Over the six pooled layers, 30
    refits in a row of a BANKING77 memory of 7-8k examples, each warm-started from the last
    with 32 examples more (one thread, a loaded machine): 1e-5 2.8 s a refit (p50) and
    93.08 % test, 3e-5 0.16 s and 93.21 %, 1e-4 0.17 s and 92.92 %; converged (1e-7)
    93.15 %. (Below about 3e-5 L-BFGS crawls over the wide head's flat directions.)"""
    consolidate_every: int = 0
    """LoRA consolidation after this many new labels (0: never; the head alone learns)."""
    gate: EvalGate = field(default_factory=EvalGate)


@dataclass(frozen=True)
class FleetOptions:
    """The fleet aggregator (``ecc serve --roles fleet``): how often, and how privately."""

    interval_s: float = 30.0
    """Seconds between aggregation rounds at most (a round runs only if a node published a
    version since the last one)."""
    rank: int = LoraOptions.r
    """Rank of the merged LoRA adapter (the truncated SVD of the mean update)."""
    fall_tolerance: float = EvalGate.tolerance
    """A node version whose held-out accuracy fell more than this below its parent's, on
    the same held-out examples (its gate's own figures), is left out of the prior. (Not
    against an earlier version's figure: the held-out set grows with new intents, so two
    versions' figures are not comparable.)"""
    clip: float = 0.0
    """L2 bound of one node's contribution (0: off; :mod:`learners.fleet.privacy`)."""
    noise: float = 0.0
    """Gaussian noise multiplier on the averages (0: off; needs ``clip``)."""
