"""A scenario replayed through the running system, and what it recorded.

:class:`Replay` plays the outside world of ``ecc demo`` and ``ecc bench loop``: customers' turns
on chat.inbound, paced, and their clients' signed feedback to the webhook once the answer came
back; it reads every topic and keeps what happened. :func:`eval_predictions` scores a node's
first and serving versions on the scenario's eval set."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from harness.clients import client_feedback
from harness.console import say
from harness.options import DemoOptions
from learners.batching import feedback_label
from learners.edge_node import new_end_model
from models.registry import AdapterRegistry
from scenarios.scenario import Scenario
from streams import topics
from streams.kafka import consumer, producer
from streams.schemas import (
    AdapterEvent,
    ChatInbound,
    ChatTurn,
    DriftEvent,
    Feedback,
    TeacherAnnotation,
    TeacherRequest,
    TrainingBatch,
    TurnBatch,
    decode,
)
from streams.settings import Settings
from streams.webhook.client import FeedbackClient
from streams.webhook.server import parse_secrets


@dataclass
class Replay:
    scenario: Scenario
    settings: Settings
    options: DemoOptions
    webhook_url: str
    served: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    teacher_requests: list[dict[str, Any]] = field(default_factory=list)
    annotations: Counter[str] = field(default_factory=Counter)
    batches: list[dict[str, Any]] = field(default_factory=list)
    adapters: list[dict[str, Any]] = field(default_factory=list)
    feedback: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    client: FeedbackClient | None = None

    async def run(self) -> None:
        truth = {t.turn_id: t for t in self.scenario.stream}
        watched = [
            topics.CHAT_TURNS,
            topics.DRIFT_EVENTS,
            topics.TEACHER_REQUESTS,
            topics.TEACHER_ANNOTATIONS,
            topics.TRAINING_BATCHES,
            topics.ADAPTERS_EVENTS,
        ]
        names = [self.settings.topic_prefix + t for t in watched]
        drift_topic = self.settings.topic_prefix + topics.DRIFT_EVENTS
        names += [self.settings.topic_prefix + topics.dlq(t) for t in topics.ALL]
        client, secret = next(iter(parse_secrets(self.settings.webhook_secrets).items()))
        async with (
            producer(self.settings, linger_ms=5) as prod,
            consumer(self.settings, names) as cons,
            FeedbackClient(self.webhook_url, client, secret) as self.client,
        ):
            bar = tqdm(total=len(self.scenario.stream), desc="      turns served", unit="turn")
            send_task = asyncio.create_task(self._send(prod))
            last_activity = time.time()
            settle_deadline: float | None = None
            try:
                while True:
                    batch = await cons.getmany(timeout_ms=200, max_records=2000)
                    for tp, messages in batch.items():
                        for m in messages:
                            if tp.topic != drift_topic:  # drift snapshots never stop
                                last_activity = time.time()
                            await self._observe(tp.topic, m.value, truth, bar)
                    if send_task.done():
                        send_task.result()
                    if len(self.served) >= len(self.scenario.stream):
                        if settle_deadline is None:
                            settle_deadline = time.time() + self.options.settle_s
                        idle = time.time() - last_activity
                        learned = len(self.adapters) >= len(self.batches)
                        quiet = idle > self.settings.batch_max_age_s + 3
                        if (learned and quiet) or time.time() > settle_deadline:
                            break
            finally:
                send_task.cancel()
                bar.close()

    async def _send(self, prod: Any) -> None:
        start = time.monotonic()
        prefix = self.settings.topic_prefix
        for i, turn in enumerate(self.scenario.stream):
            delay = start + i / self.options.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            record = ChatInbound(turn_id=turn.turn_id, node_id=turn.node_id, text=turn.text)
            await prod.send(prefix + topics.CHAT_INBOUND, record.dumps(), key=turn.node_id.encode())
        await prod.flush()

    async def _observe(
        self, topic: str, value: bytes, truth: dict[str, Any], bar: tqdm[Any]
    ) -> None:
        name = topic[len(self.settings.topic_prefix) :]
        if name.endswith(topics.DLQ_SUFFIX):
            self.dead_letters[name] += 1
            say(f"      ! dead letter on {name}: {json.loads(value).get('error', '')[:120]}")
        elif name == topics.CHAT_TURNS:
            for turn in decode(TurnBatch, value).chat_turns():
                await self._served(turn, truth, bar)
        elif name == topics.DRIFT_EVENTS:
            ev = DriftEvent.model_validate_json(value)
            if ev.kind == "transition":
                row = ev.model_dump()
                row["turns_served"] = len(self.served)
                self.transitions.append(row)
                mark = "!! DRIFT" if ev.state == "drifting" else "   drift"
                say(
                    f"      {mark} {ev.node_id}/{ev.intent}: {ev.previous_state} -> {ev.state} "
                    f"after {len(self.served)} turns (score {ev.score:.2f}; {ev.reason[:90]})"
                )
        elif name == topics.TEACHER_REQUESTS:
            req = TeacherRequest.model_validate_json(value)
            self.teacher_requests.append(
                {"node": req.node_id, "intent": req.predicted, "turns_served": len(self.served)}
            )
        elif name == topics.TEACHER_ANNOTATIONS:
            ann = TeacherAnnotation.model_validate_json(value)
            self.annotations["abstained" if ann.label is None else "labelled"] += 1
        elif name == topics.TRAINING_BATCHES:
            tb = TrainingBatch.model_validate_json(value)
            sources = Counter(e.source for e in tb.examples)
            self.batches.append(
                {
                    "batch_id": tb.batch_id,
                    "node": tb.node_id,
                    "examples": len(tb.examples),
                    "sources": dict(sources),
                    "turns_served": len(self.served),
                    # (stream index, label) of the teacher's examples: the loop bench's
                    # same-labels peers learn them when this batch arrived
                    "teacher_labels": [
                        (truth[e.turn_id].index, e.label)
                        for e in tb.examples
                        if e.source == "teacher" and e.turn_id in truth
                    ],
                }
            )
        elif name == topics.ADAPTERS_EVENTS:
            ad = AdapterEvent.model_validate_json(value)
            row = ad.model_dump()
            row["turns_served"] = len(self.served)
            self.adapters.append(row)
            acc = ad.metrics.get("holdout_accuracy")
            acc_s = f"held-out acc {acc:.2f}" if acc is not None else ""
            added = f", new intents {ad.labels_added}" if ad.labels_added else ""
            say(
                f"      adapter {ad.node_id}: {ad.status} v{ad.candidate or ad.version} "
                f"{acc_s}{added} ({ad.reason[:70]})"
            )

    async def _served(self, turn: ChatTurn, truth: dict[str, Any], bar: tqdm[Any]) -> None:
        true = truth[turn.turn_id]
        self.served.append(
            {
                "index": true.index,
                "node": turn.node_id,
                "label": true.label,
                "predicted": turn.intent,
                "confidence": turn.confidence,
                "version": turn.adapter_version,
                "drifted": true.drifted,
            }
        )
        bar.update(1)
        kind = await self._feedback(turn, true.label)
        self.served[-1]["feedback"] = kind
        self.served[-1]["feedback_label"] = (
            feedback_label(kind, true.label if kind == "correction" else None, turn.intent)
            if kind
            else None
        )
        if len(self.served) % 200 == 0:
            recent = self.served[-200:]
            acc = sum(r["label"] == r["predicted"] for r in recent) / len(recent)
            bar.set_postfix(acc200=f"{acc:.2f}", alarms=self._alarms(), versions=self._published())

    async def _feedback(self, turn: ChatTurn, label: str) -> str | None:
        """The simulated client: a few labels, more thumbs, decided per turn by a seeded hash.
        Returns the kind of feedback posted, if any."""
        o = self.options
        kind = client_feedback(
            o.seed, turn.turn_id, turn.intent, label, o.label_rate, o.thumbs_rate
        )
        if kind is None:
            return None
        fb = Feedback(
            feedback_id=f"fb-{turn.turn_id}",
            turn_id=turn.turn_id,
            node_id=turn.node_id,
            kind=kind,  # type: ignore[arg-type]
            label=label if kind == "correction" else None,
        )
        self.feedback[kind] += 1
        assert self.client is not None
        await self.client.post([fb])
        return kind

    def _alarms(self) -> int:
        return sum(1 for t in self.transitions if t["state"] == "drifting")

    def _published(self) -> int:
        return sum(1 for a in self.adapters if a["status"] == "published")


@dataclass(frozen=True)
class EvalPredictions:
    """A node's first and serving adapter versions' answers on the scenario's eval set."""

    first_version: int
    final_version: int
    first: list[str]
    final: list[str]
    intents: dict[str, int]  # version name -> how many intents it knows


def eval_predictions(
    registry: AdapterRegistry, settings: Settings, node: str, scenario: Scenario
) -> EvalPredictions | None:
    versions = registry.versions(node)
    current = registry.current(node)
    if not versions or current is None:
        return None
    opts = settings.edge_options()
    model = new_end_model(opts)
    texts = [e.text for e in scenario.eval_examples]
    answers: dict[str, list[str]] = {}
    intents: dict[str, int] = {}
    for name, version in (("first", versions[0].version), ("final", current.version)):
        meta, tensors = registry.load(node, version)
        model.load_state(tensors, meta.labels)
        answers[name] = [p.intent for p in model.predict(texts, k=1)]
        intents[name] = len(meta.labels)
    return EvalPredictions(
        versions[0].version, current.version, answers["first"], answers["final"], intents
    )


def drifted_intents(scenario: Scenario) -> set[str]:
    """The intents the scenario's drift is about: emerging (or split off), or shifted."""
    return set(scenario.emerging_intents) | (
        {scenario.shifted_intent} if scenario.shifted_intent else set()
    )
