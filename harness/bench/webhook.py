"""``ecc bench webhook``: accepted feedback per second and latency of the webhook under a
real HTTP load generator (wrk), on the embedded broker.

Each run gives wrk a pool of distinct, pre-signed requests (one new feedback id each,
signed within the replay window) and lets it send as fast as its connections allow for
``duration_s`` (closed loop: the figures are throughput at saturation and the latency
that comes with it). After each run the figures are checked against the service itself:
``accepted`` comes from the webhook's own ``/metrics`` and every accepted id is counted on
``chat.feedback``, so a figure for writes that never reached the broker cannot pass. A run
whose pool ran out (wrk cycles back to ids already sent, which are cheap duplicates) is
flagged, and its rate is the accepted items per second only.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import scrape
from harness.bench.report import environment, table, write_json
from harness.broker import EmbeddedBroker
from harness.processes import free_port, stop
from harness.workers import start_webhook
from streams import topics
from streams.kafka import ensure_topics, read_all
from streams.schemas import Feedback
from streams.settings import Settings
from streams.webhook.signing import sign

CLIENT = "bench"

_WRK_SCRIPT = r"""
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local reqs = {}
local i = 0
function init(args)
  local path, threads, route = args[1], tonumber(args[2]), args[3]
  local k = 0
  for line in io.lines(path) do
    if k % threads == id then
      local tab = string.find(line, "\t")
      reqs[#reqs + 1] = wrk.format("POST", route, {
        ["Content-Type"] = "application/json",
        ["X-ECC-Client"] = "bench",
        ["X-ECC-Signature"] = string.sub(line, 1, tab - 1),
      }, string.sub(line, tab + 1))
    end
    k = k + 1
  end
end

function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class LoadRun:
    name: str
    connections: int
    items_per_request: int
    pool: int


RUNS = (
    LoadRun("single, 32 connections", 32, 1, 120_000),
    LoadRun("single, 4 connections", 4, 1, 60_000),
    LoadRun("batch of 50, 8 connections", 8, 50, 10_000),
)


def _requests(run: LoadRun, token: str, secret: bytes, path: Path) -> None:
    """``pool`` signed requests, one line each: signature TAB body."""
    now = int(time.time())
    with path.open("w") as f:
        for r in range(run.pool):
            items = [
                Feedback(
                    feedback_id=f"{token}-{run.connections}-{r}-{k}",
                    turn_id=f"turn-{r}-{k}",
                    node_id=f"store-{(r + k) % 4}",
                    kind="correction" if k % 3 == 0 else "thumbs_up",
                    label="track_order" if k % 3 == 0 else None,
                    ts=now,
                ).model_dump_json()
                for k in range(run.items_per_request)
            ]
            body = (
                items[0]
                if run.items_per_request == 1
                else '{"feedback": [' + ",".join(items) + "]}"
            )
            f.write(f"{sign(secret, body.encode(), now)}\t{body}\n")


def _accepted(url: str) -> dict[str, float]:
    """The webhook's own counters: accepted and duplicate items, answers by status."""
    out: dict[str, float] = {"accepted": 0.0, "duplicate": 0.0}
    for sample in scrape.samples(url + "/metrics", timeout=10):
        if sample.name == "ecc_webhook_feedback_total":
            out[sample.labels["outcome"]] += sample.value
        # answers of the POST routes (not /metrics: reading it would change it)
        elif sample.name == "ecc_webhook_requests_total" and sample.labels["route"].startswith(
            "/v1/"
        ):
            key = f"status_{sample.labels['status']}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


def _settled(url: str) -> dict[str, float]:
    """The counters once requests still in flight when wrk stopped have been answered."""
    now = _accepted(url)
    while True:
        time.sleep(0.5)
        later = _accepted(url)
        if later == now:
            return now
        now = later


async def _count_on_topic(s: Settings, prefix: str) -> tuple[int, int]:
    """(records, distinct ids) on chat.feedback whose feedback id starts with ``prefix``."""
    needle = f'"feedback_id":"{prefix}'.encode()
    records = await read_all(s, topics.CHAT_FEEDBACK, 2.0, max_partition_fetch_bytes=8 << 20)
    ids = [json.loads(m.value)["feedback_id"] for m in records if needle in m.value]
    return len(ids), len(set(ids))


def run_webhook_bench(
    out: Path, duration_s: float, base: Settings, quick: bool = False
) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "wrk (an HTTP load generator) is not installed: `apt-get install wrk` (or `make tools`)"
        )
    out.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    script = out / "wrk-feedback.lua"
    script.write_text(_WRK_SCRIPT)
    runs = RUNS[:1] if quick else RUNS
    results: list[dict[str, Any]] = []
    with EmbeddedBroker(log=out / "broker.log") as broker:
        s = base.replace(
            broker=broker.bootstrap,
            state_dir=(out / "state").resolve(),
            webhook_host="127.0.0.1",
            webhook_port=free_port(),
            webhook_secrets=f"{CLIENT}={secret}",
            metrics_port=0,
        )
        asyncio.run(ensure_topics(s))
        proc, url = start_webhook(s, out / "webhook.log")
        try:
            for run in runs:
                token = secrets.token_hex(4)
                pool_file = out / "requests.tsv"
                print(f"{run.name}: signing {run.pool} requests ...", flush=True)
                _requests(run, token, secret.encode(), pool_file)
                before = _accepted(url)
                route = "/v1/feedback" if run.items_per_request == 1 else "/v1/feedback/batch"
                print(f"{run.name}: wrk for {duration_s:g} s ...", flush=True)
                done = subprocess.run(
                    [
                        wrk,
                        "--threads",
                        "1",
                        "--connections",
                        str(run.connections),
                        "--duration",
                        f"{duration_s:g}s",
                        "--timeout",
                        "10s",
                        "--script",
                        str(script),
                        url,
                        "--",
                        str(pool_file),
                        "1",
                        route,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                w = json.loads(line.removeprefix("RESULT "))
                after = _settled(url)
                accepted = after["accepted"] - before["accepted"]
                records, distinct = asyncio.run(_count_on_topic(s, token))
                seconds = w["duration_us"] / 1e6
                results.append(
                    {
                        "run": run.name,
                        "connections": run.connections,
                        "items_per_request": run.items_per_request,
                        "seconds": seconds,
                        "requests": w["requests"],
                        "requests_per_s": w["requests"] / seconds,
                        "accepted_items": int(accepted),
                        "accepted_items_per_s": accepted / seconds,
                        "duplicate_items": int(after["duplicate"] - before["duplicate"]),
                        "non_2xx": w["non_2xx"],
                        "socket_errors": w["socket_errors"],
                        "timeouts": w["timeouts"],
                        "latency_ms": {
                            "p50": w["p50_us"] / 1000,
                            "p90": w["p90_us"] / 1000,
                            "p99": w["p99_us"] / 1000,
                            "max": w["max_us"] / 1000,
                        },
                        "records_on_topic": records,
                        "distinct_ids_on_topic": distinct,
                        "pool_exhausted": w["requests"] > run.pool,
                    }
                )
                pool_file.unlink()
        finally:
            stop(proc)
    report = {"environment": environment(), "duration_s": duration_s, "runs": results}
    write_json(out / "webhook.json", report)
    for r in results:
        lat = r["latency_ms"]
        print(
            "\n"
            + table(
                [
                    (r["run"], ""),
                    ("  requests/s", f"{r['requests_per_s']:,.0f}"),
                    ("  accepted items/s", f"{r['accepted_items_per_s']:,.0f}"),
                    (
                        "  latency p50 / p90 / p99",
                        f"{lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f} ms",
                    ),
                    ("  non-2xx, socket errors", f"{r['non_2xx']}, {r['socket_errors']}"),
                    (
                        "  accepted = on chat.feedback",
                        f"{r['accepted_items']} = {r['distinct_ids_on_topic']} ids "
                        f"({r['records_on_topic']} records)",
                    ),
                ]
                + (
                    [("  NOTE", "the request pool ran out: later requests were duplicates")]
                    if r["pool_exhausted"]
                    else []
                )
            )
        )
    print(f"\nreport: {out / 'webhook.json'}")
    return report
