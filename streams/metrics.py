"""Prometheus metrics of the stream workers (prefix ``ecc_``; label sets are bounded)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

TURNS = Counter("ecc_turns_served_total", "Turns answered by edge nodes", ["node", "intent"])
CONFIDENCE = Histogram(
    "ecc_turn_confidence",
    "Confidence of served predictions",
    ["node"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
INFER_SECONDS = Histogram(
    "ecc_inference_batch_seconds", "Edge inference time per micro-batch", ["node"]
)
NODE_LOAD_SECONDS = Histogram(
    "ecc_node_load_seconds",
    "Cold load of an edge node (registry version: adapter and head) into a worker",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RESIDENT_NODES = Gauge("ecc_resident_nodes", "Edge nodes held in this worker's memory")
RESIDENT_BYTES = Gauge(
    "ecc_resident_node_bytes", "Bytes of the resident nodes' own state (encoder not counted)"
)
NODE_EVICTIONS = Counter("ecc_node_evictions_total", "Edge nodes let go to keep within bounds")
CONSUMER_LAG = Gauge(
    "ecc_consumer_lag",
    "Records of a topic not yet read by this worker (sum over its partitions)",
    ["topic"],
)
DEAD_LETTERS = Counter("ecc_dead_letters_total", "Records sent to a DLQ", ["topic"])
DRIFT_SCORE = Gauge("ecc_drift_score", "Combined drift score", ["node", "intent"])
DRIFT_STATE = Gauge(
    "ecc_drift_state", "1 for the intent's current state", ["node", "intent", "state"]
)
DRIFT_ALARMS = Counter("ecc_drift_alarms_total", "Transitions into drifting", ["node", "intent"])
DRIFT_SIGNAL = Gauge(
    "ecc_drift_signal", "Each drift signal's score (CUSUM / level)", ["node", "intent", "signal"]
)
DRIFT_TURNS = Counter("ecc_drift_turns_scored_total", "Turns scored by the drift agent", ["node"])
DRIFT_BATCH_SECONDS = Histogram(
    "ecc_drift_batch_seconds",
    "Drift agent time per buffer of records (decode, score, checkpoint)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
DRIFT_CHECKPOINTS = Counter(
    "ecc_drift_checkpoint_records_total", "Drift state records written to the table changelog"
)
FEEDBACK = Counter("ecc_feedback_total", "Feedback received", ["node", "kind"])
FEEDBACK_DUPLICATES = Counter(
    "ecc_feedback_duplicates_total", "Feedback dropped as a repeat of an id seen before", ["node"]
)
FEEDBACK_OPEN = Gauge(
    "ecc_feedback_open_examples", "Labelled examples waiting in open training batches"
)
JOIN_MISSES = Counter("ecc_feedback_join_misses_total", "Feedback whose turn is unknown", ["node"])
BATCHES = Counter("ecc_training_batches_total", "Training batches emitted", ["node", "reason"])
BATCH_SIZE = Histogram(
    "ecc_training_batch_examples", "Examples per training batch", buckets=(1, 4, 8, 16, 32, 64)
)
BATCH_AGE = Histogram(
    "ecc_training_batch_age_seconds",
    "Time from a batch's first example to its emission",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
WEBHOOK_REQUESTS = Counter(
    "ecc_webhook_requests_total", "Webhook answers by route and HTTP status", ["route", "status"]
)
WEBHOOK_SECONDS = Histogram(
    "ecc_webhook_request_duration_seconds",
    "Webhook time per request, the broker's acknowledgement included",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WEBHOOK_FEEDBACK = Counter(
    "ecc_webhook_feedback_total",
    "Feedback items answered by the webhook (accepted or duplicate)",
    ["kind", "outcome"],
)
TEACHER_REQUESTS = Counter("ecc_teacher_requests_total", "Teacher requests sent", ["node"])
TEACHER_ANNOTATIONS = Counter(
    "ecc_teacher_annotations_total", "Teacher answers", ["node", "outcome"]
)
TEACHER_AGREEMENT = Counter(
    "ecc_teacher_feedback_agreement_total",
    "Turns labelled by both the teacher and a user, by whether the labels agreed",
    ["node", "agreed"],
)
TEACHER_BUDGET = Gauge(
    "ecc_teacher_budget_remaining", "Teacher requests a node may still send now", ["node"]
)
TEACHER_SECONDS = Histogram("ecc_teacher_batch_seconds", "Teacher backend time per batch")
ADAPTER_UPDATES = Counter(
    "ecc_adapter_updates_total", "Batches applied by edge learners", ["node", "status"]
)
ADAPTER_VERSION = Gauge("ecc_adapter_version", "Serving adapter version", ["node"])
HOLDOUT_ACCURACY = Gauge(
    "ecc_adapter_holdout_accuracy", "Held-out accuracy of the serving version", ["node"]
)
UPDATE_SECONDS = Histogram(
    "ecc_lora_update_seconds",
    "Batch-to-decision time of a learner update (the fast path: memory and head refit)",
    ["node"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
SERVE_STAGE_SECONDS = Histogram(
    "ecc_serve_stage_seconds",
    "Seconds a served turn spent in each stage of the edge worker: inbound (produced to "
    "fetched), queue (waiting for the model), inference, redact, encode, publish",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSOLIDATING = Gauge(
    "ecc_consolidating", "1 while a LoRA consolidation of the node runs, else 0", ["node"]
)
CONSOLIDATION_SECONDS = Histogram(
    "ecc_consolidation_seconds",
    "Begin-to-decision time of a LoRA consolidation (training, re-embedding, refit, gate)",
    ["node"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 2400),
)

FLEET_ROUNDS = Counter("ecc_fleet_rounds_total", "Fleet aggregation rounds that wrote a prior")
FLEET_PRIOR_VERSION = Gauge("ecc_fleet_prior_version", "Version of the latest fleet prior")
FLEET_NODES = Gauge(
    "ecc_fleet_nodes", "Nodes in the latest fleet prior, by whether they counted", ["counted"]
)
for _counted in ("yes", "no"):  # exported (at 0) before the first round, as the gauges above
    FLEET_NODES.labels(_counted)
FLEET_ROUND_SECONDS = Histogram(
    "ecc_fleet_round_seconds",
    "Seconds one fleet aggregation round took (registry reads included)",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
)


def serve(port: int) -> None:
    """Expose the metrics on ``port`` (0: do not)."""
    if port:
        start_http_server(port, addr="0.0.0.0")
