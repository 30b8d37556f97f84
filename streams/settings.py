"""Every setting of the service, in one place.

Each setting is read from an environment variable named ``ECC_<FIELD>`` (upper case). The
defaults of the learner's, the model's and the drift monitor's settings are those of their
own configuration classes (:class:`EdgeOptions`, :class:`TrainOptions`, :class:`LoraOptions`,
:class:`DriftConfig`), so every default is written once; :meth:`Settings.edge_options` and
:meth:`Settings.drift_config` build those classes from the settings. ``ecc settings`` prints
them all with their current values.
Only this module reads the environment; ``learners/`` and ``models/`` take plain arguments.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from learners.drift import DriftConfig
from learners.drift.detectors import describe_detectors, parse_detectors
from learners.gate import EvalGate
from learners.options import (
    LEARNING_NODES,
    RESIDENT_MIB,
    RESIDENT_NODES,
    EdgeOptions,
    FleetOptions,
    TrainOptions,
)
from models.options import (
    KEEP_VERSIONS,
    PRECISIONS,
    TEACHER_RETRIES,
    TEACHER_TIMEOUT_S,
    LoraOptions,
)
from streams.webhook.signing import DEFAULT_TOLERANCE_S

ENV_PREFIX = "ECC_"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuse a setting outside ``choices``, naming its variable and the choices."""
    if value not in choices:
        raise ValueError(
            f"{ENV_PREFIX}{name.upper()}={value!r}: choose one of {', '.join(choices)}"
        )


def _doc(default: Any, doc: str, secret: bool = False) -> Any:
    """A dataclass field with a default and a one-line description (shown by ``ecc settings``);
    a ``secret`` one is never printed."""
    return field(default=default, metadata={"doc": doc, "secret": secret}, repr=not secret)


@dataclass(frozen=True)
class Settings:
    # --- Kafka -------------------------------------------------------------------------------
    broker: str = _doc(
        "", "Kafka bootstrap servers (host:port,...). Empty: `ecc demo` starts its own."
    )
    topic_partitions: int = _doc(
        4, "Partitions of every per-node topic (all equal: co-partitioning)."
    )
    topic_replicas: int = _doc(1, "Replication factor used when the service creates topics.")
    topic_prefix: str = _doc("", "Prefix put before every topic name (e.g. `prod.`).")
    app_id: str = _doc("ecc", "Faust application id (consumer group of the stream workers).")
    broker_session_timeout: float = _doc(6.0, "Consumer session timeout in seconds.")
    producer_batch_bytes: int = _doc(
        1,
        "Producer batch size in bytes. 1 (a record per batch) works around the embedded "
        "broker's end-offset bug so table recovery is exact; use 16384+ on Apache Kafka.",
    )
    security_protocol: str = _doc("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: str = _doc(
        "PLAIN", "SASL mechanism of the SASL protocols: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    sasl_username: str = _doc("", "SASL user name.")
    sasl_password: str = _doc("", "SASL password (never logged).", secret=True)
    ssl_cafile: str = _doc("", "CA bundle for SSL/SASL_SSL.")

    fetch_max_wait_ms: int = _doc(
        10,
        "Longest a consumer's fetch waits for data. Kafka answers as soon as data arrives, so "
        "there it only bounds idle polling; the embedded Tansu holds every fetch this long, "
        "which adds it to every hop (Faust's own 1500 made answers wait about 600 ms).",
    )

    # --- Workers ------------------------------------------------------------------------------
    state_dir: Path = _doc(Path("var"), "Where adapters, node seeds and worker state live.")
    web_port: int = _doc(6066, "Port of the worker's HTTP server (webhook, health).")
    metrics_port: int = _doc(9464, "Port of the Prometheus metrics endpoint (0: disabled).")
    lag_port: int = _doc(9465, "Port of `ecc lag --serve`, the consumer-lag exporter.")
    log_level: str = _doc("warning", "Worker log level.")
    infer_threads: int = _doc(
        0,
        "Torch threads of the serving thread (0: every core but one, at least one: the "
        "event loop and the broker client keep a core).",
    )
    learn_threads: int = _doc(
        1, "Torch threads of each learning thread (head refits, LoRA consolidation, teacher)."
    )
    learn_nice: int = _doc(
        10,
        "Niceness added to the learning threads (Linux), so answers get the cores first and "
        "learning runs on what serving leaves (0: same priority).",
    )

    # --- End model and learner ------------------------------------------------------------------
    encoder: str = _doc("", "Path of a local transformers encoder. Empty: the packaged MiniLM.")
    max_length: int = _doc(EdgeOptions.max_length, "Tokens per utterance.")
    model_precision: str = _doc(
        EdgeOptions.precision,
        "Number format of the end model's forward passes: auto (bfloat16 where the CPU runs "
        "it natively, else float32), bfloat16 or float32. LoRA and head weights and the "
        "embeddings stay float32.",
    )
    pool_layers: int = _doc(
        EdgeOptions.pool_layers,
        "Top encoder layers the intent head reads, each mean-pooled and normalised (1: the "
        "sentence embedding alone; more than the encoder has: all). Changing it re-embeds "
        "each node's example memory; versions made under another value no longer load.",
    )
    early_layers_weight: float = _doc(
        EdgeOptions.early_layers_weight,
        "Weight of the earlier pooled layers against the last in the head's L2 penalty, in "
        "the row of an intent with few examples (in (0, 1]; low: a head fitted on a few "
        "labels leans on the sentence embedding; 1: all layers alike, the prior off). "
        "Changes no stored version.",
    )
    early_layers_full_at: int = _doc(
        EdgeOptions.early_layers_full_at,
        "Examples of an intent at which its head row weighs every pooled layer alike (the "
        "weight rises linearly to it from ECC_EARLY_LAYERS_WEIGHT); 0: every row at "
        "ECC_EARLY_LAYERS_WEIGHT.",
    )
    lora_r: int = _doc(LoraOptions.r, "LoRA rank.")
    lora_alpha: int = _doc(LoraOptions.alpha, "LoRA alpha.")
    lora_targets: str = _doc(
        ",".join(LoraOptions.targets), "Comma-separated module names that get LoRA."
    )
    learning_rate: float = _doc(
        TrainOptions.learning_rate, "Learning rate of LoRA consolidation (LoRA and head)."
    )
    consolidate_steps: int = _doc(
        TrainOptions.steps,
        "Optimisation steps of one LoRA consolidation, each on a draw from the example memory.",
    )
    holdout_every: int = _doc(
        EdgeOptions.holdout_every, "Every n-th labelled example is held out for the eval gate."
    )
    holdout_per_class: int = _doc(
        EdgeOptions.holdout_per_class, "Held-out examples kept per intent for the eval gate."
    )
    memory_per_class: int = _doc(
        EdgeOptions.memory_per_class,
        "Labelled examples kept per intent (with embeddings) for the head's refit.",
    )
    head_c: float = _doc(
        EdgeOptions.head_c,
        "Inverse regularisation of the head refit (scikit-learn's C; higher: less).",
    )
    consolidate_every: int = _doc(
        EdgeOptions.consolidate_every,
        "LoRA consolidation after this many new labels (0: never, the head alone learns).",
    )
    gate_tolerance: float = _doc(
        EvalGate.tolerance, "Largest held-out accuracy drop a new version may have."
    )
    max_new_intents: int = _doc(
        TrainOptions.max_new_intents,
        "A training update that brings more new intents than this is refused (a guard).",
    )
    keep_versions: int = _doc(KEEP_VERSIONS, "Adapter versions kept per node.")
    fleet_interval_s: float = _doc(
        FleetOptions.interval_s,
        "Seconds between fleet aggregation rounds (a round runs once a node published).",
    )
    fleet_clip: float = _doc(
        FleetOptions.clip, "L2 bound of one node's contribution to the fleet prior (0: off)."
    )
    fleet_noise: float = _doc(
        FleetOptions.noise,
        "Gaussian noise multiplier on the fleet's averages (0: off; needs ECC_FLEET_CLIP).",
    )
    resident_nodes: int = _doc(
        RESIDENT_NODES,
        "Nodes a worker keeps in memory at most, least recently used let go first (0: no "
        "bound); a node let go loads again from the registry on its next turn.",
    )
    resident_mib: int = _doc(
        RESIDENT_MIB, "MiB of node state a worker keeps at most (0: no bound but the count)."
    )
    learning_nodes: int = _doc(
        LEARNING_NODES,
        "Nodes whose example memory stays loaded after they learn (the most recent; 0: all).",
    )
    infer_batch: int = _doc(64, "Largest micro-batch of turns predicted together.")
    low_confidence: float = _doc(
        DriftConfig.low_confidence, "A turn below this confidence counts as low-confidence."
    )
    seed: int = _doc(TrainOptions.seed, "Seed of every random choice (training order, sampling).")
    redact_kinds: str = _doc(
        "all",
        "PII kinds redacted at the edge ingress: `all` or a comma-separated subset of "
        "EMAIL, CARD, PHONE, ORDER_ID, ADDRESS, NAME.",
    )

    # --- Feedback and batching ------------------------------------------------------------------
    batch_size: int = _doc(32, "Labelled examples per training batch.")
    batch_max_age_s: float = _doc(
        1.0,
        "A non-empty batch older than this is flushed anyway (the learner's fast path learns "
        "a small batch in a fraction of a second, so a label need not wait for 31 others).",
    )
    turn_ttl_s: float = _doc(
        3600.0, "How long a turn can still receive feedback (and a feedback id is remembered)."
    )

    # --- Feedback webhook (`ecc webhook`) --------------------------------------------------------
    webhook_host: str = _doc("0.0.0.0", "Address the webhook listens on.")
    webhook_port: int = _doc(8080, "Port of the webhook (`POST /v1/feedback`, `/openapi.json`).")
    webhook_secrets: str = _doc(
        "",
        "Client secrets of the webhook, `client=secret,other=secret2` (never logged).",
        secret=True,
    )
    webhook_tolerance_s: float = _doc(
        DEFAULT_TOLERANCE_S, "Largest gap between a signature's timestamp and the webhook's clock."
    )
    webhook_produce_timeout_s: float = _doc(
        5.0, "How long the webhook waits for the broker's acknowledgement before a 503."
    )
    webhook_retry_after_s: int = _doc(5, "Retry-After (seconds) of the webhook's 503 answers.")

    # --- Drift --------------------------------------------------------------------------------
    drift_min_turns: int = _doc(
        DriftConfig.min_turns, "Turns an intent needs before its reference is set."
    )
    drift_snapshot_s: float = _doc(10.0, "Seconds between drift score snapshots on drift.events.")
    drift_threshold: float = _doc(
        DriftConfig.threshold,
        "CUSUM decision level of the rate signals: low-confidence share, share of traffic, "
        "feedback errors (higher: fewer, later alarms).",
    )
    drift_gaussian_threshold: float = _doc(
        DriftConfig.gaussian_threshold,
        "CUSUM decision level of the mean-confidence and embedding-distance signals "
        "(higher: fewer, later alarms).",
    )
    drift_detectors: str = _doc(
        "",
        "river's detector in place of a signal's CUSUM, as signal=detector pairs, e.g. "
        f"`error=ddm,confidence=adwin` ({describe_detectors()}). Empty: CUSUMs on every "
        "signal (the fewest false alarms in `ecc bench drift`; README).",
    )
    drift_checkpoint_s: float = _doc(
        1.0, "Seconds between checkpoints of the drift state to its table (alarms: always)."
    )

    # --- Teacher ------------------------------------------------------------------------------
    teacher_backend: str = _doc("embedded", "`embedded` (local cloud-corpus model) or `openai`.")
    teacher_corpus: str = _doc("", "CSV (text,label) of the cloud's labelled corpus.")
    teacher_url: str = _doc("", "OpenAI-compatible base URL for the `openai` backend.")
    teacher_model: str = _doc("", "Model name for the `openai` backend.")
    teacher_api_key: str = _doc(
        "", "Bearer token for the `openai` backend (never logged).", secret=True
    )
    teacher_intents: str = _doc(
        "", "Known intents for the `openai` backend, comma-separated (default: the corpus labels)."
    )
    teacher_timeout_s: float = _doc(TEACHER_TIMEOUT_S, "Timeout of one `openai` backend request.")
    teacher_retries: int = _doc(
        TEACHER_RETRIES, "Retries (exponential backoff) of a failed `openai` request."
    )
    teacher_budget_per_minute: int = _doc(60, "Teacher requests per node per minute.")
    teacher_min_confidence: float = _doc(0.6, "Annotations below this are not trained on.")

    def __post_init__(self) -> None:
        _one_of("security_protocol", self.security_protocol, SECURITY_PROTOCOLS)
        if self.security_protocol.startswith("SASL"):
            _one_of("sasl_mechanism", self.sasl_mechanism, SASL_MECHANISMS)
        _one_of("model_precision", self.model_precision, PRECISIONS)
        try:
            parse_detectors(self.drift_detectors)
        except ValueError as exc:
            raise ValueError(
                f"{ENV_PREFIX}DRIFT_DETECTORS={self.drift_detectors!r}: {exc}"
            ) from None
        for name in (
            "infer_threads",
            "learn_threads",
            "learn_nice",
            "resident_nodes",
            "resident_mib",
            "learning_nodes",
            "early_layers_full_at",
            "fleet_clip",
            "fleet_noise",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={getattr(self, name)}: 0 or more")
        if self.fleet_noise and not self.fleet_clip:
            raise ValueError(
                f"{ENV_PREFIX}FLEET_NOISE={self.fleet_noise}: set {ENV_PREFIX}FLEET_CLIP too "
                "(the noise is scaled to that bound)"
            )
        if self.fleet_interval_s <= 0:
            raise ValueError(f"{ENV_PREFIX}FLEET_INTERVAL_S={self.fleet_interval_s}: above 0")
        if not 0.0 < self.early_layers_weight <= 1.0:
            raise ValueError(
                f"{ENV_PREFIX}EARLY_LAYERS_WEIGHT={self.early_layers_weight}: in (0, 1]"
            )
        if self.pool_layers < 1:
            raise ValueError(f"{ENV_PREFIX}POOL_LAYERS={self.pool_layers}: 1 or more")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``ECC_*`` variables; ``overrides`` win over the environment."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ``ECC_*`` variables that reproduce these settings in a child process."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def ready_marker(self) -> Path:
        """The file a stream worker writes once its partitions are assigned (the demo, the
        soak and the tests wait on it)."""
        return self.state_dir / "worker.ready"

    def edge_options(self) -> EdgeOptions:
        """The edge learner's configuration from these settings."""
        return EdgeOptions(
            encoder_path=self.encoder or None,
            lora=LoraOptions(
                r=self.lora_r, alpha=self.lora_alpha, targets=tuple(self.lora_targets.split(","))
            ),
            max_length=self.max_length,
            precision=self.model_precision,
            pool_layers=self.pool_layers,
            early_layers_weight=self.early_layers_weight,
            early_layers_full_at=self.early_layers_full_at,
            train=TrainOptions(
                learning_rate=self.learning_rate,
                steps=self.consolidate_steps,
                seed=self.seed,
                max_new_intents=self.max_new_intents,
            ),
            holdout_every=self.holdout_every,
            holdout_per_class=self.holdout_per_class,
            memory_per_class=self.memory_per_class,
            head_c=self.head_c,
            consolidate_every=self.consolidate_every,
            gate=EvalGate(tolerance=self.gate_tolerance),
        )

    def fleet_options(self) -> FleetOptions:
        """The fleet aggregator's configuration from these settings."""
        return FleetOptions(
            interval_s=self.fleet_interval_s,
            rank=self.lora_r,
            fall_tolerance=self.gate_tolerance,
            clip=self.fleet_clip,
            noise=self.fleet_noise,
        )

    def drift_config(self) -> DriftConfig:
        """The drift monitor's configuration from these settings."""
        return DriftConfig(
            min_turns=self.drift_min_turns,
            low_confidence=self.low_confidence,
            threshold=self.drift_threshold,
            gaussian_threshold=self.drift_gaussian_threshold,
            detectors=parse_detectors(self.drift_detectors),
        )

    @staticmethod
    def is_secret(env_name: str) -> bool:
        """Whether the setting ``env_name`` must never be printed or logged."""
        name = env_name.removeprefix(ENV_PREFIX).lower()
        return any(f.name == name and f.metadata.get("secret") for f in fields(Settings))

    @staticmethod
    def describe() -> list[tuple[str, str, str]]:
        """(env name, default, description) of every setting."""
        return [
            (ENV_PREFIX + f.name.upper(), str(f.default), f.metadata.get("doc", ""))
            for f in fields(Settings)
        ]


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{f.name.upper()}={raw!r}: expected {kind}") from exc
    return raw
