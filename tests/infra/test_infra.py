"""The deployment files are checked by the tools that will read them.

Prometheus config and alert rules with promtool (rules are unit-tested in
``infra/alerts/tests``), the compose file with Debian's docker-compose, and the Grafana
dashboards against Grafana's published schema types (``@grafana/schema``, checked by
TypeScript's compiler in strict mode: unknown keys and wrong types fail). The tools are
installed by ``make test-deps`` (part of ``make test``). That the dashboards' queries
return data is checked against a real Prometheus in ``tests/integration/test_demo.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CHECK = INFRA / "grafana" / "check"


def run(argv: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    tool = shutil.which(argv[0]) or (str(CHECK / argv[0]) if (CHECK / argv[0]).exists() else None)
    assert tool, f"{argv[0]} is not installed: run `make test-deps`"
    done = subprocess.run(
        [tool, *argv[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_prometheus_config_is_valid() -> None:
    run(["promtool", "check", "config", "--syntax-only", str(INFRA / "prometheus.yml")])


def test_alert_rules_are_valid_and_pass_their_unit_tests() -> None:
    rules = sorted(str(p) for p in (INFRA / "alerts").glob("*.yml"))
    assert rules
    run(["promtool", "check", "rules", *rules])
    tests = sorted(str(p) for p in (INFRA / "alerts" / "tests").glob("*.yml"))
    out = run(["promtool", "test", "rules", *tests])
    assert "SUCCESS" in out


def test_every_alert_rule_has_a_unit_test() -> None:
    rules = "".join(p.read_text() for p in (INFRA / "alerts").glob("*.yml"))
    tests = "".join(p.read_text() for p in (INFRA / "alerts" / "tests").glob("*.yml"))
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert names
    untested = [n for n in names if f"alertname: {n}" not in tests]
    assert not untested, untested


def test_compose_file_is_valid() -> None:
    run(["docker-compose", "config", "-q"], env={"ECC_WEBHOOK_SECRETS": "ci=not-a-secret"})


def _dashboards() -> Any:
    spec = importlib.util.spec_from_file_location("dashboards", INFRA / "grafana" / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_files_are_what_the_generator_writes() -> None:
    module = _dashboards()
    files = sorted(p.name for p in (INFRA / "grafana" / "dashboards").glob("*.json"))
    assert files == sorted(module.DASHBOARDS)
    for name, dashboard in module.DASHBOARDS.items():
        written = (INFRA / "grafana" / "dashboards" / name).read_text()
        assert written == module.render(dashboard), f"{name}: run infra/grafana/dashboards.py"


TS_HEADER = """\
import type { AnnotationQuery, Dashboard, DataSourceRef, Panel } from '@grafana/schema';
interface PromQuery {
  refId: string; datasource: DataSourceRef; expr: string; legendFormat?: string
}
type EccPanel = Omit<Panel, 'targets'> & { targets: PromQuery[] };
type EccDashboard = Omit<Dashboard, 'panels' | 'annotations'> & {
  panels: EccPanel[];
  annotations: { list: AnnotationQuery<PromQuery>[] };
};
export const dashboard: EccDashboard = """


def test_dashboards_match_grafana_schema_types() -> None:
    build = CHECK / ".build"
    if build.exists():
        shutil.rmtree(build)
    build.mkdir()
    for path in sorted((INFRA / "grafana" / "dashboards").glob("*.json")):
        (build / f"{path.stem}.ts").write_text(TS_HEADER + path.read_text() + ";\n")
    run(["node_modules/.bin/tsc", "-p", str(CHECK)], cwd=CHECK)


@pytest.mark.parametrize("bad", ['"type": 5', '"colour": "red"'])
def test_the_schema_check_refuses_a_bad_dashboard(bad: str) -> None:
    """The check is not vacuous: a wrong type or an unknown key fails it."""
    build = CHECK / ".build"
    build.mkdir(exist_ok=True)
    for old in build.glob("*.ts"):
        old.unlink()
    text = (INFRA / "grafana" / "dashboards" / "pipeline.json").read_text()
    broken = text.replace('"type": "timeseries"', bad, 1)
    assert broken != text
    (build / "broken.ts").write_text(TS_HEADER + broken + ";\n")
    tsc = CHECK / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "run `make test-deps`"
    done = subprocess.run([str(tsc), "-p", str(CHECK)], cwd=CHECK, capture_output=True, text=True)
    (build / "broken.ts").unlink()
    assert done.returncode != 0 and "error TS" in done.stdout, done.stdout
