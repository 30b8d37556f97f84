"""Writes the Grafana dashboards of ``infra/grafana/dashboards/`` (one per concern).

The JSON files are generated, not hand-edited, so every panel has the same shape and the
tests can check them all the same way (`tests/infra/`: Grafana's schema types, and every
query against a real Prometheus scraping a running pipeline). After a change here:

    .venv/bin/python infra/grafana/dashboards.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

Query = tuple[str, str]  # (PromQL, legend)


def _panel(
    title: str,
    description: str,
    queries: list[Query],
    unit: str = "short",
    kind: str = "timeseries",
) -> dict[str, Any]:
    options: dict[str, Any]
    if kind == "timeseries":
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:  # stat
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(queries)
        ],
    }


def _dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]]
) -> dict[str, Any]:
    for i, panel in enumerate(panels):
        panel["id"] = i + 1
        panel["gridPos"] = {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ecc"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "node",
                    "label": "edge node",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": "label_values(ecc_adapter_version, node)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "drifting intents",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "red",
                    "target": {
                        "refId": "alarms",
                        "datasource": DATASOURCE,
                        # the state gauge, not changes() of the alarms counter: that
                        # series is born at 1, so its first alarm is no change at all
                        "expr": DRIFTING,
                        "legendFormat": "{{node}}/{{intent}} drifting",
                    },
                }
            ]
        },
        "panels": panels,
    }


N = 'node=~"$node"'
V1 = 'route=~"/v1/.*"'
DRIFTING = f'max by (node, intent) (ecc_drift_state{{{N}, state="drifting"}}) == 1'
WEBHOOK_SECONDS = "ecc_webhook_request_duration_seconds"


def quantile(q: float, metric: str, by: str = "", window: str = "5m", match: str = "") -> str:
    """PromQL for the ``q`` quantile of histogram ``metric`` (grouped ``by``)."""
    group = f"{by}, le" if by else "le"
    selector = f"{{{match}}}" if match else ""
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{window}])))"


def mean(metric: str, window: str = "15m") -> str:
    """PromQL for the mean of histogram ``metric`` over ``window``."""
    return f"sum(rate({metric}_sum[{window}])) / sum(rate({metric}_count[{window}]))"


TRAFFIC = _dashboard(
    "ecc-traffic-drift",
    "ecc: traffic and drift",
    "What the edge nodes serve and where customers' language drifts, per node and intent.",
    [
        _panel(
            "Turns served per second",
            "Turns answered by edge nodes.",
            [(f"sum by (node) (rate(ecc_turns_served_total{{{N}}}[1m]))", "{{node}}")],
            "reqps",
        ),
        _panel(
            "Top intents (turns per second)",
            "The ten busiest (node, intent) pairs.",
            [
                (
                    f"topk(10, sum by (node, intent) (rate(ecc_turns_served_total{{{N}}}[5m])))",
                    "{{node}}/{{intent}}",
                )
            ],
            "reqps",
        ),
        _panel(
            "Confidence (median and 10th percentile)",
            "Of served predictions; a falling low tail: the model meets text it does not know.",
            [
                (
                    quantile(0.5, "ecc_turn_confidence", "node", match=N),
                    "p50 {{node}}",
                ),
                (
                    quantile(0.1, "ecc_turn_confidence", "node", match=N),
                    "p10 {{node}}",
                ),
            ],
            "percentunit",
        ),
        _panel(
            "Drift score, highest intents",
            "Combined drift score in [0, 1] (the largest signal's CUSUM over its decision level).",
            [(f"topk(10, max by (node, intent) (ecc_drift_score{{{N}}}))", "{{node}}/{{intent}}")],
            "percentunit",
        ),
        _panel(
            "Intents by drift state",
            "How many intents are stable, warning, drifting or recovering.",
            [(f"sum by (state) (ecc_drift_state{{{N}}})", "{{state}}")],
        ),
        _panel(
            "Drift alarms (last hour)",
            "Transitions into drifting, per node and intent.",
            [
                (
                    f"sum by (node, intent) (increase(ecc_drift_alarms_total{{{N}}}[1h]))",
                    "{{node}}/{{intent}}",
                )
            ],
        ),
    ],
)

LEARNING = _dashboard(
    "ecc-learning",
    "ecc: learning and adapters",
    "The edge learners: adapter versions, held-out accuracy, update outcomes and durations.",
    [
        _panel(
            "Serving adapter version",
            "Version each node serves; a rollback shows as a step down.",
            [(f"max by (node) (ecc_adapter_version{{{N}}})", "{{node}}")],
        ),
        _panel(
            "Held-out accuracy of the serving version",
            "On the node's held-out reservoir (never trained on).",
            [(f"max by (node) (ecc_adapter_holdout_accuracy{{{N}}})", "{{node}}")],
            "percentunit",
        ),
        _panel(
            "Adapter updates by outcome (per hour)",
            "published, rejected by the eval gate, skipped (a batch applied before), rolled back "
            "(consolidations that began are not updates: the panel below).",
            [
                (
                    f"sum by (node, status) (increase(ecc_adapter_updates_total{{{N}}}[1h]))",
                    "{{node}} {{status}}",
                )
            ],
        ),
        _panel(
            "Learner update duration (p50, p90)",
            "Batch-to-decision time of the fast path: memory, head refit, eval gate, publish.",
            [
                (
                    quantile(0.5, "ecc_lora_update_seconds", window="15m", match=N),
                    "p50",
                ),
                (
                    quantile(0.9, "ecc_lora_update_seconds", window="15m", match=N),
                    "p90",
                ),
            ],
            "s",
        ),
        _panel(
            "LoRA consolidations (running; ended per hour)",
            "The slow path beside the fast one: 1 while a node's consolidation runs; how many "
            "ended in the last hour (their outcomes: adapters.events, and the updates panel).",
            [
                (f"max by (node) (ecc_consolidating{{{N}}})", "{{node}} running"),
                (
                    f"sum by (node) (increase(ecc_consolidation_seconds_count{{{N}}}[1h]))",
                    "{{node}} ended",
                ),
            ],
        ),
        _panel(
            "Resident nodes (and let go per hour)",
            "Nodes each worker holds in memory (ECC_RESIDENT_NODES, ECC_RESIDENT_MIB bound "
            "them), and how many it let go; a node let go loads again on its next turn.",
            [
                ("sum(ecc_resident_nodes)", "resident"),
                ("sum(increase(ecc_node_evictions_total[1h]))", "let go per hour"),
            ],
        ),
        _panel(
            "Cold node load (mean since the workers started)",
            "Seconds to load a node that was not resident: its registry version (adapter, "
            "head) over the worker's shared encoder.",
            [
                (
                    "sum(ecc_node_load_seconds_sum) / sum(ecc_node_load_seconds_count)",
                    "mean",
                )
            ],
            "s",
        ),
        _panel(
            "Training batches by reason (per hour)",
            "Closed by size (ECC_BATCH_SIZE) or by age (ECC_BATCH_MAX_AGE_S).",
            [
                (
                    f"sum by (node, reason) (increase(ecc_training_batches_total{{{N}}}[1h]))",
                    "{{node}} {{reason}}",
                )
            ],
        ),
        _panel(
            "Training batch size and age (mean)",
            "Examples per batch, and seconds from a batch's first example to its emission.",
            [
                (
                    mean("ecc_training_batch_examples"),
                    "examples",
                ),
                (
                    mean("ecc_training_batch_age_seconds"),
                    "age (s)",
                ),
            ],
        ),
        _panel(
            "Fleet priors (version; nodes counted and left out)",
            "The fleet aggregator (ecc serve --roles fleet): the latest prior's version, how "
            "many nodes' versions went into it and how many were left out (their held-out "
            "accuracy fell). Whether a node adopted it: the updates panel, reason 'fleet prior'.",
            [
                ("max(ecc_fleet_prior_version)", "prior version"),
                ('max(ecc_fleet_nodes{counted="yes"})', "nodes counted"),
                ('max(ecc_fleet_nodes{counted="no"})', "nodes left out"),
            ],
        ),
    ],
)

FEEDBACK = _dashboard(
    "ecc-feedback-teacher",
    "ecc: feedback and teacher",
    "What clients post to the webhook, what the feedback agent makes of it, and the teacher.",
    [
        _panel(
            "Webhook answers by status (per second)",
            "202 accepted; 401 bad signature; 413/415/400/422 bad body; 503 broker down.",
            [
                (
                    'sum by (status) (rate(ecc_webhook_requests_total{route=~"/v1/.*"}[1m]))',
                    "{{status}}",
                )
            ],
            "reqps",
        ),
        _panel(
            "Webhook latency (p50, p99)",
            "Per request, the broker's acknowledgement included.",
            [
                (
                    quantile(0.5, WEBHOOK_SECONDS, match=V1),
                    "p50",
                ),
                (
                    quantile(0.99, WEBHOOK_SECONDS, match=V1),
                    "p99",
                ),
            ],
            "s",
        ),
        _panel(
            "Feedback by kind (per minute)",
            "Joined by the feedback agent; duplicates (a repeated feedback id) are dropped.",
            [
                (f"sum by (kind) (rate(ecc_feedback_total{{{N}}}[5m])) * 60", "{{kind}}"),
                (f"sum(rate(ecc_feedback_duplicates_total{{{N}}}[5m])) * 60", "duplicates"),
                (f"sum(rate(ecc_feedback_join_misses_total{{{N}}}[5m])) * 60", "join misses (DLQ)"),
            ],
        ),
        _panel(
            "Examples waiting in open batches",
            "Labelled examples not yet in a training batch.",
            [("sum(ecc_feedback_open_examples)", "open examples")],
        ),
        _panel(
            "Teacher requests and answers (per minute)",
            "Requests sent for drifting intents; the teacher's answers by outcome.",
            [
                (f"sum(rate(ecc_teacher_requests_total{{{N}}}[5m])) * 60", "requests"),
                (
                    f"sum by (outcome) (rate(ecc_teacher_annotations_total{{{N}}}[5m])) * 60",
                    "{{outcome}}",
                ),
            ],
        ),
        _panel(
            "Teacher agreement with users",
            "Share of turns labelled by both the teacher and a user on which they agree.",
            [
                (
                    f'(sum(ecc_teacher_feedback_agreement_total{{{N}, agreed="yes"}}) or vector(0))'
                    f" / sum(ecc_teacher_feedback_agreement_total{{{N}}})",
                    "agreement",
                )
            ],
            "percentunit",
        ),
        _panel(
            "Teacher budget left and latency",
            "Requests a node may still send this minute; teacher time per batch (p90).",
            [
                (f"min by (node) (ecc_teacher_budget_remaining{{{N}}})", "budget {{node}}"),
                (
                    quantile(0.9, "ecc_teacher_batch_seconds", window="15m"),
                    "p90 seconds",
                ),
            ],
        ),
    ],
)

PIPELINE = _dashboard(
    "ecc-pipeline",
    "ecc: pipeline health",
    "Are the components up, keeping up, and fed well-formed records?",
    [
        _panel(
            "Components up",
            "1 when Prometheus scraped the component.",
            [('up{job=~"ecc-.*"}', "{{job}} {{instance}}")],
        ),
        _panel(
            "Consumer lag by topic",
            "Records the stream workers have not read yet.",
            [("sum by (topic) (ecc_consumer_lag)", "{{topic}}")],
        ),
        _panel(
            "Dead letters by topic (per hour)",
            "Malformed records sent to <topic>.dlq with the reason.",
            [("sum by (topic) (increase(ecc_dead_letters_total[1h]))", "{{topic}}")],
        ),
        _panel(
            "Drift agent time per buffer (p50, p99)",
            "Decode, score and checkpoint of one buffer of records.",
            [
                (
                    quantile(0.5, "ecc_drift_batch_seconds"),
                    "p50",
                ),
                (
                    quantile(0.99, "ecc_drift_batch_seconds"),
                    "p99",
                ),
            ],
            "s",
        ),
        _panel(
            "Edge inference time per micro-batch (p90)",
            "Per node.",
            [
                (
                    quantile(0.9, "ecc_inference_batch_seconds", "node", match=N),
                    "{{node}}",
                )
            ],
            "s",
        ),
        _panel(
            "Where an answer's time goes (per turn, mean over 5 m)",
            "Seconds a served turn spends in each edge-worker stage: inbound (produced to "
            "fetched), queue (waiting for the model), inference, redact, encode, publish.",
            [
                (
                    "sum by (stage) (rate(ecc_serve_stage_seconds_sum[5m])) / "
                    "sum by (stage) (rate(ecc_serve_stage_seconds_count[5m]))",
                    "{{stage}}",
                )
            ],
            "s",
        ),
        _panel(
            "Turns scored by the drift agent (per second)",
            "Should follow turns served.",
            [(f"sum by (node) (rate(ecc_drift_turns_scored_total{{{N}}}[1m]))", "{{node}}")],
            "reqps",
        ),
    ],
)

DASHBOARDS = {
    "traffic-drift.json": TRAFFIC,
    "learning.json": LEARNING,
    "feedback-teacher.json": FEEDBACK,
    "pipeline.json": PIPELINE,
}


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2) + "\n"


if __name__ == "__main__":
    for name, dashboard in DASHBOARDS.items():
        (OUT / name).write_text(render(dashboard))
        print(f"wrote {OUT / name}")
