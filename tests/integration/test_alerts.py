"""The alert rules under promtool: each alert fires on a synthetic series showing its problem and
stays silent on a healthy one (``promtool test rules``); the rule file itself is valid.

Needs Debian's prometheus package (promtool); without it the test skips locally and fails under
CI=true (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.tools import require

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docker" / "prometheus" / "alerts.yml"
JOB = {"job": "cmal-api", "instance": "api:8000"}

# alert -> (eval time, firing series, healthy series, the labels the alert carries besides its own)
SCENARIOS: dict[str, tuple[str, dict[str, str], dict[str, str], dict[str, str]]] = {
    "CmalDown": ("5m", {'up{job="cmal-api",instance="api:8000"}': "0x20"},
                 {'up{job="cmal-api",instance="api:8000"}': "1x20"}, JOB),
    "CmalNotReady": ("5m", {'cmal_ready{job="cmal-api",instance="api:8000"}': "0x20"},
                     {'cmal_ready{job="cmal-api",instance="api:8000"}': "1x20"}, JOB),
    "CmalServerErrors": (
        "15m",
        {'cmal_requests_total{outcome="error",task="vqa"}': "0+10x20",
         'cmal_requests_total{outcome="ok",task="vqa"}': "0+100x20"},
        {'cmal_requests_total{outcome="error",task="vqa"}': "0x20",
         'cmal_requests_total{outcome="ok",task="vqa"}': "0+100x20"},
        {},
    ),
    "CmalSlowRequests": (
        "20m",
        {'http_request_duration_seconds_bucket{handler="/v1/vqa",le="1.0"}': "0+1x30",
         'http_request_duration_seconds_bucket{handler="/v1/vqa",le="3.0"}': "0+100x30",
         'http_request_duration_seconds_bucket{handler="/v1/vqa",le="+Inf"}': "0+100x30"},
        {'http_request_duration_seconds_bucket{handler="/v1/vqa",le="0.1"}': "0+100x30",
         'http_request_duration_seconds_bucket{handler="/v1/vqa",le="1.0"}': "0+100x30",
         'http_request_duration_seconds_bucket{handler="/v1/vqa",le="+Inf"}': "0+100x30"},
        {},
    ),
    "CmalQueueNearlyFull": ("5m", {"cmal_queue_depth": "250x10", "cmal_queue_capacity": "256x10"},
                            {"cmal_queue_depth": "10x10", "cmal_queue_capacity": "256x10"}, {}),
    "CmalRejecting": ("15m", {'cmal_requests_total{outcome="rejected",task="vqa"}': "0+60x20"},
                      {'cmal_requests_total{outcome="rejected",task="vqa"}': "0x20"}, {}),
    "CmalDeadlineExceeded": ("15m", {'cmal_requests_total{outcome="timeout",task="vqa"}': "0+6x20"},
                             {'cmal_requests_total{outcome="timeout",task="vqa"}': "0x20"}, {}),
    "CmalDroppedRequests": ("25m", {'cmal_requests_total{outcome="dropped",task="vqa"}': "0+60x30"},
                            {'cmal_requests_total{outcome="dropped",task="vqa"}': "0+1x30"}, {}),
}  # fmt: skip


def promtool() -> str:
    return require("promtool", "apt-get install prometheus")


def rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def test_every_alert_has_a_scenario_and_a_runbook() -> None:
    assert set(rules()) == set(SCENARIOS)
    for name, rule in rules().items():
        assert rule["annotations"]["summary"] and len(rule["annotations"]["runbook"]) > 40, name
        assert rule["labels"]["severity"] in ("page", "ticket"), name


def test_promtool_checks_the_rules_and_each_alert_fires_only_when_it_should(tmp_path: Path) -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = []
    for name, (at, firing, healthy, extra) in SCENARIOS.items():
        rule = rules()[name]
        expected = {"exp_labels": {**rule["labels"], **extra}, "exp_annotations": rule["annotations"]}
        for series, alerts in ((firing, [expected]), (healthy, [])):
            tests.append(
                {
                    "name": f"{name} {'fires' if alerts else 'stays silent'}",
                    "interval": "1m",
                    "input_series": [{"series": s, "values": v} for s, v in series.items()],
                    "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": alerts}],
                }
            )
    shutil.copyfile(RULES, tmp_path / "alerts.yml")
    spec = tmp_path / "alerts.test.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run([tool, "test", "rules", str(spec)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout
