"""A synchronous client of the edge service, for chat back ends that are not asyncio
(Django, Flask, a bridge from another language), on kafka-python.

:meth:`ChatClient.ask` publishes a customer's message to ``chat.inbound`` with the schema
and key the edge worker expects (the node id: a node's turns stay in one partition, in
order) and reads the answer from ``chat.turns``. It reads only the partition of that node
(``chat.turns`` and the DLQ are keyed and partitioned like ``chat.inbound``), from where it
ended before the message was sent, so it sees its answer and nothing older. A message the
worker refuses (a node that was never bootstrapped, say) comes back as :class:`TurnRefused`
with the worker's reason, read from ``chat.inbound.dlq``; no answer within the timeout is a
:class:`TimeoutError` that says what to check. A client is for one thread at a time
(kafka-python's consumer is not thread-safe): one per worker thread of the back end.

Connection settings are the service's (``ECC_BROKER``, ``ECC_TOPIC_PREFIX``, the
``ECC_SECURITY_PROTOCOL`` family)::

    from streams.clients import ChatClient

    with ChatClient() as chat:
        answer = chat.ask("store-eu", "where is my parcel?")
        print(answer.intent, answer.confidence)
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from streams import topics
from streams.kafka import client_options
from streams.schemas import ChatInbound, DeadLetter, SchemaError, TurnBatch, decode
from streams.settings import Settings

ASK_TIMEOUT_S = 10.0
"""Seconds :meth:`ChatClient.ask` waits for an answer by default."""


class TurnRefused(RuntimeError):
    """The edge worker refused the message (it is in the DLQ); the reason is the message."""


@dataclass(frozen=True)
class Answer:
    """What the edge node answered to one message."""

    turn_id: str
    node_id: str
    intent: str
    confidence: float
    adapter_version: int
    redacted_text: str
    seconds: float
    """From sending the message to reading its answer."""


class ChatClient:
    """Ask edge nodes, synchronously (see the module docstring)."""

    def __init__(self, settings: Settings | None = None, timeout_s: float = ASK_TIMEOUT_S) -> None:
        self.settings = settings or Settings.from_env()
        if not self.settings.broker:
            raise ValueError("ECC_BROKER is empty: set it to the Kafka bootstrap servers")
        self.timeout_s = timeout_s
        names = topics.TopicNames(self.settings.topic_prefix)
        self._inbound = names(topics.CHAT_INBOUND)
        self._turns = names(topics.CHAT_TURNS)
        self._refused = names(topics.dlq(topics.CHAT_INBOUND))
        options = client_options(self.settings)
        # (no idempotent producer: the embedded broker has none; a send is one record)
        self._producer = KafkaProducer(**options, linger_ms=0, acks="all", enable_idempotence=False)
        self._consumer = KafkaConsumer(**options, group_id=None, enable_auto_commit=False)

    def ask(
        self,
        node_id: str,
        text: str,
        turn_id: str | None = None,
        session_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        """Send ``text`` to edge node ``node_id`` and wait for its answer.

        Raises :class:`ValueError` for a message the schema refuses (nothing is sent),
        :class:`TurnRefused` if the worker refused it, :class:`TimeoutError` if no answer
        came within ``timeout_s`` (default: the client's)."""
        record = ChatInbound(
            turn_id=turn_id or uuid.uuid4().hex,
            node_id=node_id,
            text=text,
            session_id=session_id,
        )
        key = node_id.encode()
        partition, watched = self._watch(key)
        started = time.monotonic()
        sent = self._producer.send(self._inbound, record.dumps(), key=key, partition=partition)
        sent.get(timeout=self.timeout_s)
        wait = self.timeout_s if timeout_s is None else timeout_s
        deadline = started + wait
        while time.monotonic() < deadline:
            remaining_ms = max(1, int(1000 * (deadline - time.monotonic())))
            polled = self._consumer.poll(timeout_ms=min(remaining_ms, 200))
            for partition, messages in polled.items():
                if partition not in watched:
                    continue
                for message in messages:
                    answer = self._read(partition.topic, message.value, record, started)
                    if answer is not None:
                        return answer
        raise TimeoutError(
            f"no answer for turn {record.turn_id} from node {node_id!r} within {wait:g} s: "
            f"is an edge worker (`ecc serve --roles edge`) running against {self.settings.broker}?"
        )

    def _watch(self, key: bytes) -> tuple[int, set[TopicPartition]]:
        """The key's partition (Kafka's default partitioner, murmur2, as every client of
        the service uses), its chat.turns and DLQ partitions read from their current ends."""
        partitions = sorted(self._consumer.partitions_for_topic(self._turns) or [])
        if not partitions:
            raise RuntimeError(f"topic {self._turns} does not exist: run `ecc topics create`")
        index = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        watched = {TopicPartition(self._turns, index), TopicPartition(self._refused, index)}
        self._consumer.assign(list(watched))
        for partition, end in self._consumer.end_offsets(list(watched)).items():
            self._consumer.seek(partition, end)
        return index, watched

    def _read(self, topic: str, value: bytes, asked: ChatInbound, started: float) -> Answer | None:
        if topic == self._refused:
            letter = _letter(value)
            if letter is not None and _turn_id_of(letter) == asked.turn_id:
                raise TurnRefused(f"turn {asked.turn_id} refused: {letter.error}")
            return None
        try:
            batch = decode(TurnBatch, value)
        except SchemaError:
            return None  # (the worker dead-letters what it cannot read; not ours)
        for turn in batch.chat_turns():
            if turn.turn_id == asked.turn_id:
                return Answer(
                    turn_id=turn.turn_id,
                    node_id=turn.node_id,
                    intent=turn.intent,
                    confidence=turn.confidence,
                    adapter_version=turn.adapter_version,
                    redacted_text=turn.text,
                    seconds=time.monotonic() - started,
                )
        return None

    def close(self) -> None:
        self._producer.close()
        self._consumer.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _letter(value: bytes) -> DeadLetter | None:
    try:
        return decode(DeadLetter, value)
    except SchemaError:
        return None


def _turn_id_of(letter: DeadLetter) -> str | None:
    try:
        original: Any = decode(ChatInbound, base64.b64decode(letter.original_b64))
    except (SchemaError, ValueError):
        return None
    return str(original.turn_id)
