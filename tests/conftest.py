"""Shared fixtures: a tiny random encoder for fast unit tests, and datasets' location."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"

# A few labelled utterances for unit tests of the end model and the edge node.
SEED_TEXTS = [
    "where is my parcel",
    "track my order please",
    "cancel my order now",
    "i want to cancel this",
    "refund status please",
    "when do i get my money back",
]
SEED_LABELS = ["track", "track", "cancel", "cancel", "refund", "refund"]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer, saved to a folder.

    Real transformers code paths, a fraction of the cost: unit tests of the end model and
    trainer use it; integration tests and benchmarks use the packaged MiniLM.
    """
    import torch
    from transformers import BertConfig, BertModel

    from models.encoder import packaged_encoder_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    source = packaged_encoder_path()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder
