"""The arms of ``ecc bench loop``: the running system and the peers beside it, with the
names the report and the plots print."""

from __future__ import annotations

from harness.bench.peers import PEERS

ARMS = ("system", *PEERS)
ARM_NAMES = {
    "system": "full system (LoRA edge + drift + teacher)",
    "static": "static model (never updated)",
    "river": "river online softmax (frozen emb.)",
    "periodic": "periodic full retraining (frozen emb.)",
}
