"""The options of the harness's commands (``ecc demo``, ``ecc soak``, ``ecc bench``), in one
light module: the command line takes its defaults from here, so each is written once, and
``ecc --help`` needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scenarios.scenario import Kind


@dataclass(frozen=True)
class DemoOptions:
    data: str | None = None
    scenario: Kind = "emerging"
    turns: int = 6000
    rate: float = 60.0
    nodes: tuple[str, ...] = ("store-eu", "store-us")
    label_rate: float = 0.02
    thumbs_rate: float = 0.06
    out: Path = Path("var/demo")
    seed: int = 7
    settle_s: float = 90.0
    worker_start_timeout_s: float = 180.0
    peers: bool = True  # replay the static, river and periodic peers on the same stream
    retrain_every: int = 500  # the periodic peer's refit period, in turns of its node


@dataclass(frozen=True)
class SoakOptions:
    kills: int = 20
    kill_every_s: float = 12.0
    load_s: float = 600.0
    rate: float = 20.0
    label_rate: float = 0.10
    thumbs_rate: float = 0.10
    sample_every_s: float = 5.0
    settle_s: float = 120.0
    out: Path = Path("reports/soak")
    seed: int = 7


@dataclass(frozen=True)
class DriftBenchOptions:
    turns: int = 40_000
    """Turns per scenario stream."""
    seeds: int = 3
    batch: int = 32
    feedback_rate: float = 0.05
    onset: float = 0.3
    throughput_turns: int = 250_000
    quick: bool = False


@dataclass(frozen=True)
class TeacherBenchOptions:
    turns: int = 6000
    budget_per_minute: int = 20
    rate: float = 10.0  # turns a second of the replayed stream (sets how fast budget refills)
    batch: int = 32
    seed: int = 7


@dataclass(frozen=True)
class LearnerBenchOptions:
    seed_per_intent: int = 10
    batch_size: int = 32
    stream_limit: int | None = None
    """Most stream examples (None: the whole training split minus the seeds)."""
    test_limit: int | None = None
    forgetting_share: float = 0.3
    """Share of intents (group A) that appear only in the first half of the stream."""
    curve_points: int = 25
    """Points of the prequential-accuracy curves."""
    lora_ablation: bool = False
    """After the stream, one LoRA consolidation over the node's memory: test accuracy of
    the head alone against head + LoRA (what the slow path adds)."""
    seed: int = 7


@dataclass(frozen=True)
class ServingBenchOptions:
    shares: tuple[float, ...] = (0.25, 0.5, 0.9)
    """Offered load, as shares of the measured maximum."""
    seconds_per_point: float = 20.0
    burst_turns: int = 1500
    round_trips: int = 200
    learn_every_s: float = 2.0
    """While the learner is busy: a training batch this often, beside a LoRA
    consolidation that runs for the whole busy phase."""
    seed: int = 7


@dataclass(frozen=True)
class NodesBenchOptions:
    counts: tuple[int, ...] = (10, 100, 1000)
    """Nodes bootstrapped into one worker, one measurement each (in a fresh process)."""
    seeds_per_intent: int = 10
    turns: int = 1280
    """Turns predicted per measurement (micro-batches of ``batch``), Zipf-mixed over nodes."""
    batch: int = 64
    zipf_s: float = 1.1
    """Exponent of the Zipf mix: node of rank k gets turns in proportion to 1 / k**s."""
    cold_loads: int = 200
    """Nodes loaded cold (timed) per measurement at most."""
    seed: int = 7


@dataclass(frozen=True)
class FleetBenchOptions:
    nodes: int = 4
    intents: int = 30
    """Intents every node knows from its seeds (the dataset's first, by name order)."""
    new_intents: int = 3
    """Intents none knows at the start: they appear at the first node from ``first_round``,
    at the others from ``late_round``."""
    seeds_per_intent: int = 5
    labels_per_round: int = 40
    """Labels of the intents it knows that each node learns per round (one batch)."""
    new_labels_per_round: int = 8
    """Labels of each new intent a node learns per round once it sees that intent."""
    rounds: int = 8
    first_round: int = 1
    late_round: int = 5
    new_node_seeds: int = 2
    """Seed examples per intent of the node bootstrapped at the end, seed-only and from
    the fleet."""
    threshold: float = 0.7
    """Accuracy on a new intent counted as answering it (the issue's goal)."""
    seed: int = 7


FLEET_QUICK = FleetBenchOptions(
    intents=12, new_intents=2, labels_per_round=24, rounds=6, late_round=4
)
"""``ecc bench fleet-learning --quick``: for CI."""

NODES_QUICK = NodesBenchOptions(counts=(10, 40), turns=384, cold_loads=40)
"""``ecc bench nodes --quick``: for CI."""

PRECISION_QUICK_PER_INTENT = (20, 10)
"""``ecc bench precision --quick``: generated train and test utterances per intent."""
SERVING_QUICK = ServingBenchOptions(seconds_per_point=6.0, burst_turns=400, round_trips=50)

DRIFT_QUICK = DriftBenchOptions(turns=8_000, seeds=1, throughput_turns=20_000, quick=True)
"""``ecc bench drift --quick``: short streams, one seed."""
TEACHER_QUICK_TURNS = 2000
"""``ecc bench teacher --quick``: turns of the stream."""
LEARNER_QUICK_STREAM, LEARNER_QUICK_TEST = 640, 600
"""``ecc bench learner --quick``: labelled examples streamed, test examples scored."""
LOOP_BENCH_RATE = 15.0
"""``ecc bench loop``'s turns/s: slower than the demo's, so the learner (which works in
wall-clock time) gets as many updates per turn as it would on live traffic."""
WEBHOOK_BENCH_S = 15.0
"""``ecc bench webhook``: seconds per wrk run."""
