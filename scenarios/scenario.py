"""A replayable traffic scenario with one drift in it, for the demo, the tests and benchmarks.

A scenario says what every party knows: an edge node starts from a few labelled examples
per initial intent, the cloud teacher from a much larger corpus (it never saw a stream text),
the stream is chat traffic of several nodes with a drift at ``onset``, and the eval set is
the post-drift distribution the adapted models are scored on. Everything derives from the
config's seed, so the same config always replays the same traffic.

>>> s = build_scenario(ScenarioConfig(turns=200, seed_per_intent=2, eval_per_intent=2))
>>> s.name, s.emerging_intents, s.onset_index
('generated-emerging', ['price_match', 'gift_card_balance'], 70)
>>> any(t.label in s.emerging_intents for t in s.stream[: s.onset_index])
False
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Literal, get_args

from scenarios.datasets import Example, LabelledData
from scenarios.generator import BASE_INTENTS, EMERGING_INTENTS, sample
from scenarios.phrasing import shift_phrasing
from scenarios.splits import split_count
from scenarios.traffic import IntentMix

Kind = Literal["emerging", "phrasing", "gradual", "split", "stationary"]

# Built-in generator: non-seed examples per intent, split into stream pool and teacher corpus.
GENERATED_POOL_PER_INTENT = 300


@dataclass(frozen=True)
class ScenarioConfig:
    """What to replay. ``emerging`` and ``emerging_share`` apply to kind "emerging" only,
    ``shifted_intent`` to "phrasing" and "gradual" only; other kinds ignore them.

    Kind "split": one intent the nodes know turns out to be two. Before the onset the
    texts of the new intent are labelled with the old one (seeds included); from the onset
    users and the teacher label them with the new intent, its only emerging intent."""

    kind: Kind = "emerging"
    nodes: tuple[str, ...] = ("store-eu", "store-us")
    turns: int = 3000
    onset: float = 0.35
    seed_per_intent: int = 10
    eval_per_intent: int = 30
    emerging: int = 2
    emerging_share: float = 0.3
    shifted_intent: str | None = None
    stream_pool_fraction: float = 0.5
    seed: int = 7


@dataclass(frozen=True)
class TrafficTurn:
    """One chat message of the stream; ``drifted`` marks turns the drift affects (an
    emerging-intent turn, or a shifted utterance whose text the shift changed)."""

    index: int
    turn_id: str
    node_id: str
    text: str
    label: str
    drifted: bool


@dataclass(frozen=True)
class Scenario:
    """A built scenario: the data each party starts from, the stream, and the eval set."""

    config: ScenarioConfig
    name: str
    initial_intents: list[str]
    emerging_intents: list[str]
    shifted_intent: str | None
    onset_index: int
    split_from: str | None  # kind "split": the known intent the emerging one splits off
    seed_examples: list[Example]
    teacher_corpus: list[Example]
    eval_examples: list[Example]
    stream: list[TrafficTurn]

    @property
    def intents(self) -> list[str]:
        """Every intent of the scenario: initial ones, then emerging ones."""
        return [*self.initial_intents, *self.emerging_intents]

    def summary(self) -> dict[str, object]:
        """Counts for logs and reports."""
        post = self.stream[self.onset_index :]
        return {
            "name": self.name,
            "kind": self.config.kind,
            "turns": len(self.stream),
            "onset_index": self.onset_index,
            "turns_per_node": dict(sorted(Counter(t.node_id for t in self.stream).items())),
            "drifted_turns": sum(t.drifted for t in self.stream),
            "drifted_share_after_onset": round(sum(t.drifted for t in post) / len(post), 4)
            if post
            else 0.0,
            "initial_intents": len(self.initial_intents),
            "emerging_intents": list(self.emerging_intents),
            "shifted_intent": self.shifted_intent,
            "seed_examples": len(self.seed_examples),
            "teacher_corpus": len(self.teacher_corpus),
            "eval_examples": len(self.eval_examples),
        }


def build_scenario(config: ScenarioConfig, data: LabelledData | None = None) -> Scenario:
    """Build the scenario for ``config`` from ``data``, or from the built-in generator."""
    _validate(config)
    split = _split_pair(config, data)
    emerging = [split[1]] if split else _emerging_intents(config, data)
    generated = data is None
    if data is None:
        data = _generated_data(config, list(dict.fromkeys([*BASE_INTENTS, *emerging])))
    known = BASE_INTENTS if generated else data.labels
    initial = [label for label in known if label not in emerging]
    shifted = _shifted_intent(config, initial)
    seeds, pools, teacher = _partition(data, initial, config, split)
    missing = [label for label in (*initial, *emerging) if label not in pools]
    if missing:
        raise ValueError(f"{data.name}: no train examples for intents {missing}")
    return Scenario(
        config=config,
        name=f"{data.name}-{config.kind}",
        initial_intents=initial,
        emerging_intents=emerging,
        shifted_intent=shifted,
        onset_index=_onset_index(config),
        split_from=split[0] if split else None,
        seed_examples=seeds,
        teacher_corpus=teacher,
        eval_examples=_eval_examples(data, [*initial, *emerging], shifted, config),
        stream=_stream(config, initial, emerging, shifted, pools, split),
    )


def _validate(c: ScenarioConfig) -> None:
    problems = []
    if c.kind not in get_args(Kind):
        problems.append(f"kind must be one of {get_args(Kind)}, got {c.kind!r}")
    if not c.nodes or len(set(c.nodes)) != len(c.nodes):
        problems.append(f"nodes must be non-empty and unique, got {c.nodes}")
    if c.turns < 1:
        problems.append(f"turns must be >= 1, got {c.turns}")
    if not 0.0 <= c.onset <= 1.0:
        problems.append(f"onset must be in [0, 1], got {c.onset}")
    if c.seed_per_intent < 0 or c.eval_per_intent < 0:
        problems.append("seed_per_intent and eval_per_intent must be >= 0")
    if c.kind == "emerging" and c.emerging < 1:
        problems.append(f"an emerging scenario needs emerging >= 1, got {c.emerging}")
    if not 0.0 <= c.emerging_share <= 1.0:
        problems.append(f"emerging_share must be in [0, 1], got {c.emerging_share}")
    if not 0.0 < c.stream_pool_fraction < 1.0:
        problems.append(f"stream_pool_fraction must be in (0, 1), got {c.stream_pool_fraction}")
    if problems:
        raise ValueError("invalid ScenarioConfig: " + "; ".join(problems))


def _emerging_intents(config: ScenarioConfig, data: LabelledData | None) -> list[str]:
    if config.kind != "emerging":
        return []
    if data is None:
        if config.emerging > len(EMERGING_INTENTS):
            raise ValueError(
                f"emerging={config.emerging}: the built-in generator has "
                f"{len(EMERGING_INTENTS)} emerging intents"
            )
        return list(EMERGING_INTENTS[: config.emerging])
    labels = data.labels
    if config.emerging >= len(labels):
        raise ValueError(
            f"emerging={config.emerging}: {data.name} has only {len(labels)} labels "
            "and at least one must stay initial"
        )
    return sorted(random.Random(f"{config.seed}:emerging").sample(labels, config.emerging))


def _split_pair(config: ScenarioConfig, data: LabelledData | None) -> tuple[str, str] | None:
    """(old, new) for kind "split": two intents whose names share the most words (the ones
    a store most plausibly merged), a seeded pick among the closest pairs and order."""
    if config.kind != "split":
        return None
    labels = sorted(data.labels) if data is not None else sorted(BASE_INTENTS)
    words = {label: set(label.lower().replace("-", "_").split("_")) for label in labels}
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
    best = max(len(words[a] & words[b]) for a, b in pairs)
    rng = random.Random(f"{config.seed}:split")
    old, new = rng.choice([p for p in pairs if len(words[p[0]] & words[p[1]]) == best])
    return (new, old) if rng.random() < 0.5 else (old, new)


def _shifted_intent(config: ScenarioConfig, initial: list[str]) -> str | None:
    if config.kind not in ("phrasing", "gradual"):
        return None
    if config.shifted_intent is None:
        return random.Random(f"{config.seed}:shifted").choice(initial)
    if config.shifted_intent not in initial:
        raise ValueError(f"shifted_intent {config.shifted_intent!r} is not an initial intent")
    return config.shifted_intent


def _onset_index(config: ScenarioConfig) -> int:
    return int(config.onset * config.turns)


def _generated_data(config: ScenarioConfig, intents: list[str]) -> LabelledData:
    """One unique sample cut per intent into eval (test) and the rest (train): disjoint."""
    per_train = config.seed_per_intent + GENERATED_POOL_PER_INTENT
    examples = sample(intents, config.eval_per_intent + per_train, seed=config.seed)
    train: list[Example] = []
    test: list[Example] = []
    count: Counter[str] = Counter()
    for e in examples:
        count[e.label] += 1
        (test if count[e.label] <= config.eval_per_intent else train).append(e)
    return LabelledData("generated", train, test)


def _partition(
    data: LabelledData,
    initial: list[str],
    config: ScenarioConfig,
    split: tuple[str, str] | None = None,
) -> tuple[list[Example], dict[str, list[str]], list[Example]]:
    """Seed examples first, then per label a stream pool and the teacher's share: disjoint.
    For a split, the new intent's seeds carry the old label (the nodes cannot tell yet)."""
    train = _unique_texts(data.train)
    random.Random(f"{config.seed}:shuffle").shuffle(train)
    by_label: dict[str, list[Example]] = {}
    for e in train:
        by_label.setdefault(e.label, []).append(e)
    seeds: list[Example] = []
    for label in initial:
        seeds.extend(by_label.get(label, [])[: config.seed_per_intent])
    if split:
        old, new = split
        from_new = config.seed_per_intent // 2  # both halves, seed_per_intent in all
        seeds = [e for e in seeds if e.label != old]
        for label, count in ((old, config.seed_per_intent - from_new), (new, from_new)):
            seeds.extend(Example(e.text, old) for e in by_label.get(label, [])[:count])
    seed_texts = {e.text for e in seeds}
    pools: dict[str, list[str]] = {}
    teacher_texts: set[str] = set()
    for label, examples in by_label.items():
        rest = [e for e in examples if e.text not in seed_texts]
        n = split_count(len(rest), config.stream_pool_fraction)
        if n == 0:
            raise ValueError(
                f"{data.name}: intent {label!r} has no train examples left for the stream "
                f"after {config.seed_per_intent} seed examples"
            )
        pools[label] = [e.text for e in rest[:n]]
        teacher_texts.update(e.text for e in rest[n:])
    teacher = [e for e in train if e.text in teacher_texts]
    return seeds, pools, teacher


def _unique_texts(examples: list[Example]) -> list[Example]:
    """Drop repeated texts (the first one wins), so no text lands on two sides of a split."""
    seen: set[str] = set()
    out = []
    for e in examples:
        if e.text not in seen:
            seen.add(e.text)
            out.append(e)
    return out


def _eval_examples(
    data: LabelledData, intents: list[str], shifted: str | None, config: ScenarioConfig
) -> list[Example]:
    """Test examples never seen in train, ``eval_per_intent`` each, drifted as after onset."""
    train_texts = {e.text for e in data.train}
    rng = random.Random(f"{config.seed}:eval")
    shift_rng = random.Random(f"{config.seed}:eval-shift")  # same selection for every kind
    out: list[Example] = []
    for label in intents:
        candidates = list(
            dict.fromkeys(
                e.text for e in data.test if e.label == label and e.text not in train_texts
            )
        )
        rng.shuffle(candidates)
        for text in candidates[: config.eval_per_intent]:
            out.append(
                Example(shift_phrasing(text, shift_rng) if label == shifted else text, label)
            )
    rng.shuffle(out)
    return out


def _stream(
    config: ScenarioConfig,
    initial: list[str],
    emerging: list[str],
    shifted: str | None,
    pools: dict[str, list[str]],
    split: tuple[str, str] | None = None,
) -> list[TrafficTurn]:
    rng = random.Random(f"{config.seed}:stream")
    shift_rng = random.Random(f"{config.seed}:shift")  # a shift leaves the traffic itself alone
    # A split's new intent is old traffic under a new name: it is in the mix from the start.
    served = [*initial, *emerging] if split else initial
    initial_mix = {
        n: IntentMix.draw(served, random.Random(f"{config.seed}:{n}:mix")) for n in config.nodes
    }
    emerging_mix = {
        n: IntentMix.draw(emerging, random.Random(f"{config.seed}:{n}:emerging-mix"))
        for n in config.nodes
        if emerging and not split
    }
    onset = _onset_index(config)
    ramp = max(1, config.turns - onset - 1)
    turns: list[TrafficTurn] = []
    for i in range(config.turns):
        node = config.nodes[rng.randrange(len(config.nodes))]
        after = i >= onset
        if emerging_mix and after and rng.random() < config.emerging_share:
            label = emerging_mix[node].pick(rng)
        else:
            label = initial_mix[node].pick(rng)
        text = rng.choice(pools[label])
        drifted = after and label in emerging
        if split and not after and label == split[1]:
            label = split[0]  # before the onset nobody tells the two apart
        if after and label == shifted:
            strength = 1.0 if config.kind == "phrasing" else min(1.0, (i - onset) / ramp)
            new_text = shift_phrasing(text, shift_rng, strength)
            drifted, text = new_text != text, new_text
        turns.append(TrafficTurn(i, f"{node}-{i:07d}", node, text, label, drifted))
    return turns
