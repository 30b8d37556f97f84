"""Serving through the real broker: chat.inbound -> edge worker -> chat.turns.

Starts an embedded broker and a real ``ecc serve --roles edge`` worker, then sends turns
from this process and reads the answers: a burst (throughput: turns answered per second)
and a paced run at half that rate (end-to-end latency from send to answer, p50/p99). The
model's own batched throughput in this process is the limit to compare with.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.broker import EmbeddedBroker
from harness.processes import stop
from harness.workers import start_worker
from learners.edge_node import EdgeNode
from models.registry import AdapterRegistry
from scenarios.datasets import Example
from streams import topics
from streams.kafka import consumer, ensure_topics, producer
from streams.schemas import ChatInbound, TurnBatch, decode
from streams.settings import Settings

NODE = "bench-node"


def model_throughput(node: EdgeNode, texts: list[str], batch: int) -> float:
    """Utterances per second of the model alone, in micro-batches of ``batch``."""
    node.predict(texts[:batch])  # warm up
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        node.predict(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - started)


async def _exchange(s: Settings, texts: list[str], tag: str, rate: float | None) -> dict[str, Any]:
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    prefix = s.topic_prefix
    async with (
        consumer(s, [prefix + topics.CHAT_TURNS]) as cons,
        producer(s, linger_ms=2) as prod,
    ):

        async def send() -> None:
            start = time.monotonic()
            for i, text in enumerate(texts):
                if rate:
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                turn_id = f"{tag}-{i}"
                sent[turn_id] = time.time()
                record = ChatInbound(turn_id=turn_id, node_id=NODE, text=text)
                await prod.send(prefix + topics.CHAT_INBOUND, record.dumps(), key=NODE.encode())
            await prod.flush()

        task = asyncio.create_task(send())
        deadline = time.monotonic() + 120 + len(texts) / 20
        while len(got) < len(texts) and time.monotonic() < deadline:
            for msgs in (await cons.getmany(timeout_ms=200)).values():
                now = time.time()
                for m in msgs:
                    for turn_id in decode(TurnBatch, m.value).turn_ids:
                        if turn_id.startswith(tag + "-"):
                            got[turn_id] = now
        await task
    latencies = [got[t] - sent[t] for t in got]
    span = max(got.values()) - min(sent.values()) if got else float("nan")
    return {
        "turns": len(texts),
        "answered": len(got),
        "turns_per_s": len(got) / span if got else 0.0,
        "latency_ms_p50": 1000 * float(np.percentile(latencies, 50)) if latencies else None,
        "latency_ms_p99": 1000 * float(np.percentile(latencies, 99)) if latencies else None,
    }


def run_serving(
    seeds: list[Example], texts: list[str], base: Settings, log_dir: Path
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log=log_dir / "broker.log") as b:
        state = Path(tmp)
        s = base.replace(
            broker=b.bootstrap,
            state_dir=state,
            app_id="ecc-bench-serving",
            topic_prefix="bench.",
            metrics_port=0,
        )
        asyncio.run(ensure_topics(s))
        registry = AdapterRegistry(state / "adapters")
        opts = s.edge_options()
        EdgeNode.bootstrap(
            NODE, registry, state, [e.text for e in seeds], [e.label for e in seeds], opts
        )
        node = EdgeNode(NODE, registry, state, opts)
        limit = model_throughput(node, texts, s.infer_batch)
        del node
        worker = start_worker(s, log_dir / "serving-worker.log", roles="edge")
        try:
            asyncio.run(_exchange(s, texts[:64], "warm", None))
            burst = asyncio.run(_exchange(s, texts, "burst", None))
            paced_rate = max(1.0, burst["turns_per_s"] / 2)
            paced = asyncio.run(_exchange(s, texts, "paced", paced_rate))
        finally:
            stop(worker, timeout=20)
    return {
        "model_utterances_per_s": limit,
        "infer_batch": s.infer_batch,
        "burst": burst,
        "paced": {**paced, "offered_turns_per_s": paced_rate},
    }
