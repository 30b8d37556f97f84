"""A node's labelled examples with their embeddings: what the fast path refits the head on.

Each intent keeps at most ``per_class`` examples. Once an intent is full, a new example
takes the place of a kept one with probability ``per_class / seen`` (reservoir sampling),
so the kept examples stay a uniform sample of all the intent's examples, and the memory is
class-balanced and bounded however long the stream. The choice is a hash of the example's
id, not a random draw, so the same stream gives the same memory after any restart.

Embeddings are valid for one encoder only: the memory carries the ``key`` of the encoder
that computed them (:func:`models.end_model.encoder_key`); after the encoder changes (a
LoRA consolidation, a rollback), :meth:`ExampleMemory.set_vectors` replaces them all.

The whole memory is one ``.npz`` file (texts, labels, ids, float16 vectors, counts), written
atomically and read without pickle.

>>> import numpy as np
>>> m = ExampleMemory(per_class=2, dim=2)
>>> left = m.add(["e1", "e2", "e3"], ["hi", "hello", "hey"], ["greet"] * 3, np.eye(3, 2))
>>> len(m), m.seen("greet"), len(left)
(2, 3, 1)
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
STORED = np.float16
"""How kept embeddings are held, in memory and on disk: they are unit-norm, and half
precision (3 significant digits) halves a node's memory without moving a refit measurably."""


@dataclass(frozen=True)
class Kept:
    """One labelled example with its embedding."""

    example_id: str
    text: str
    label: str
    vector: Array


@dataclass
class _Intent:
    ids: list[str]
    texts: list[str]
    vectors: list[Array]
    seen: int = 0


class ExampleMemory:
    """At most ``per_class`` labelled examples per intent, each with its embedding."""

    def __init__(self, per_class: int, dim: int, key: str = "") -> None:
        if per_class < 1:
            raise ValueError("per_class must be >= 1")
        self.per_class = per_class
        self.dim = dim
        self.key = key
        self._intents: dict[str, _Intent] = {}
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return sum(len(i.ids) for i in self._intents.values())

    def __contains__(self, example_id: object) -> bool:
        return example_id in self._ids

    def labels(self) -> list[str]:
        """The intents with at least one example, in the order they first came."""
        return [lab for lab, i in self._intents.items() if i.ids]

    def seen(self, label: str) -> int:
        """How many examples of ``label`` were ever offered (kept or not)."""
        intent = self._intents.get(label)
        return intent.seen if intent else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the kept embeddings and texts, roughly (Python objects not counted)."""
        texts = sum(len(t) for i in self._intents.values() for t in i.texts)
        return len(self) * self.dim * np.dtype(STORED).itemsize + texts

    def count(self, label: str) -> int:
        intent = self._intents.get(label)
        return len(intent.ids) if intent else 0

    def add(
        self,
        example_ids: Sequence[str],
        texts: Sequence[str],
        labels: Sequence[str],
        vectors: Array,
    ) -> list[Kept]:
        """Offer examples (an id already kept is ignored: a redelivered batch adds nothing).

        Returns the examples this memory does not keep: offered and turned away, or put
        out by a newer one (the node trains on its held-out set's, so no label is lost).
        """
        if not len(example_ids) == len(texts) == len(labels) == len(vectors):
            raise ValueError("ids, texts, labels and vectors differ in length")
        out: list[Kept] = []
        for example_id, text, label, vector in zip(
            example_ids, texts, labels, vectors, strict=True
        ):
            if example_id in self._ids:
                continue
            intent = self._intents.setdefault(label, _Intent([], [], []))
            intent.seen += 1
            row = np.asarray(vector, dtype=STORED)
            if len(intent.ids) < self.per_class:
                intent.ids.append(example_id)
                intent.texts.append(text)
                intent.vectors.append(row)
            else:
                slot = zlib.crc32(example_id.encode()) % intent.seen
                if slot >= self.per_class:
                    out.append(Kept(example_id, text, label, np.asarray(vector, dtype=np.float32)))
                    continue
                evicted = intent.ids[slot]
                out.append(
                    Kept(
                        evicted, intent.texts[slot], label, intent.vectors[slot].astype(np.float32)
                    )
                )
                self._ids.discard(evicted)
                intent.ids[slot], intent.texts[slot], intent.vectors[slot] = (
                    example_id,
                    text,
                    row,
                )
            self._ids.add(example_id)
        return out

    def examples(self) -> tuple[list[str], list[str], list[str]]:
        """Ids, texts and labels of every kept example, intent by intent (a stable order,
        the one :meth:`vectors` and :meth:`set_vectors` use)."""
        ids, texts, labels = [], [], []
        for label, intent in self._intents.items():
            ids += intent.ids
            texts += intent.texts
            labels += [label] * len(intent.ids)
        return ids, texts, labels

    def vectors(self) -> Array:
        """Every kept example's embedding, one row each, in :meth:`examples`' order."""
        return self._stacked(np.float32)

    def _stacked(self, dtype: Any) -> Array:
        """The kept embeddings as one ``dtype`` array, converted in one copy."""
        rows = [v for intent in self._intents.values() for v in intent.vectors]
        return np.array(rows, dtype=dtype) if rows else np.zeros((0, self.dim), dtype)

    def set_vectors(self, vectors: Array, key: str) -> None:
        """Replace every embedding (in :meth:`examples`' order) with one encoder's, ``key``."""
        if len(vectors) != len(self):
            raise ValueError(f"{len(vectors)} vectors for {len(self)} examples")
        at = 0
        for intent in self._intents.values():
            n = len(intent.ids)
            intent.vectors = [np.asarray(v, dtype=STORED) for v in vectors[at : at + n]]
            at += n
        self.key = key

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the whole memory to ``path`` atomically (a crash leaves the old file)."""
        ids, texts, labels = self.examples()
        names = list(self._intents)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            ids=np.array(ids, dtype=str),
            texts=np.array(texts, dtype=str),
            labels=np.array(labels, dtype=str),
            vectors=self._stacked(STORED),  # as held: no round trip through float32
            intents=np.array(names, dtype=str),
            seen=np.array([self._intents[n].seen for n in names], dtype=np.int64),
            key=np.array(self.key),
            per_class=np.array(self.per_class),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, per_class: int) -> ExampleMemory:
        """The memory saved at ``path``; a smaller ``per_class`` than it was saved with keeps
        each intent's first ``per_class`` examples (class-balanced still)."""
        with np.load(path, allow_pickle=False) as f:
            vectors = f["vectors"]
            memory = cls(per_class, int(vectors.shape[1]), str(f["key"]))
            for name, seen in zip(f["intents"].tolist(), f["seen"].tolist(), strict=True):
                memory._intents[name] = _Intent([], [], [], int(seen))
            for example_id, text, label, vector in zip(
                f["ids"].tolist(), f["texts"].tolist(), f["labels"].tolist(), vectors, strict=True
            ):
                intent = memory._intents[label]
                if len(intent.ids) < per_class:
                    intent.ids.append(example_id)
                    intent.texts.append(text)
                    intent.vectors.append(np.array(vector, dtype=STORED))
                    memory._ids.add(example_id)
        return memory
