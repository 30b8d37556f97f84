"""The arms of ``ecc bench loop``: the running system and the peers beside it, with the
names the report and the plots print."""

from __future__ import annotations

from harness.bench.peers import PEERS, SAME_LABELS

LEARNING_PEERS = ("river", "periodic")
"""The peers that learn (the static one never does): each also runs with the system's
labels."""
ARMS = ("system", *PEERS, *(p + SAME_LABELS for p in LEARNING_PEERS))
ARM_NAMES = {
    "system": "full system (edge learner + drift + teacher)",
    "static": "static model (never updated)",
    "river": "river online softmax (frozen emb.), user labels",
    "periodic": "periodic full retraining (frozen emb.), user labels",
    "river" + SAME_LABELS: "river, the system's labels (user + teacher)",
    "periodic" + SAME_LABELS: "periodic retraining, the system's labels (user + teacher)",
}
