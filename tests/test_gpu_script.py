"""benchmarks/gpu.py: the dry run rehearses every step on the CPU without a failure, and a unit that
fails, crashes or runs out of time becomes a failed row while the run goes on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu  # noqa: E402  (a script beside the benchmarks' common.py, not a package)

#: The dry run's total limit plus room for the start-up on a busy machine.
DRY_RUN_TIMEOUT_S = 600


def table_rows(report: str) -> list[dict[str, str]]:
    """The rows of the report's markdown table, by column name."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split(" | ")))) for line in lines[2:]]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path_factory.mktemp("gpu") / "table.md"
    completed = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--dry-run", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
        timeout=DRY_RUN_TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return completed, out.read_text() if out.is_file() else ""


def test_dry_run_has_a_row_per_step_and_none_failed(dry_run):
    completed, report = dry_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert report and report in completed.stdout  # printed and written alike
    rows = table_rows(report)
    assert [step for step in gpu.STEPS if any(row["step"] == step for row in rows)] == list(gpu.STEPS)
    assert [row for row in rows if row["status"] not in ("ok", "skipped")] == []
    assert "CPU:" in report and "GPU:" in report


def test_dry_run_covers_every_amp_network_and_backend(dry_run):
    rows = table_rows(dry_run[1])
    training = [row for row in rows if row["step"] == gpu.STEP_TRAINING]
    assert len(training) == len(gpu.TRAIN_CONFIGS) * len(gpu.TRAIN_AMPS)
    assert all(row["status"] == "ok" for row in training if not row["case"].endswith("fp16"))
    assert all(row["result"].startswith("chose ") for row in training if row["case"].endswith("auto"))
    latency: dict[str, list[str]] = {}
    for row in rows:
        if row["step"] == gpu.STEP_LATENCY:
            network, variant, _image = row["case"].split(", ")
            latency.setdefault(network, []).append(variant)
    assert latency == {name: list(gpu.LATENCY_VARIANTS) for name in gpu.MODELS}
    assert [row["status"] for row in rows if row["step"] == gpu.STEP_DDP] == ["ok", "ok"]


# ---------------------------------------------------------------- failures become rows, the run goes on


def python_unit(name: str, code: str) -> gpu.Unit:
    """A unit running ``python -c code``, its rows read as a worker's."""
    return gpu.Unit("9 stand-in", name, lambda plan: [sys.executable, "-c", code],
                    lambda plan, finished: gpu.parse_rows(finished.stdout))


def emitting(status: str, exit_code: int = 0) -> str:
    row = json.dumps({"step": "9 stand-in", "case": "a case", "status": status, "result": "found", "seconds": 0.1})
    return f"print({gpu.ROW_PREFIX + row!r}); import sys; sys.exit({exit_code})"


def test_a_crash_after_a_row_keeps_the_row_and_adds_a_failed_one(tmp_path):
    plan = gpu.Plan(dry_run=True, work=tmp_path)
    rows = gpu.run_unit(python_unit("crash", emitting("ok", 3)), plan, limit_s=60)
    assert [(row.case, row.status) for row in rows] == [("a case", "ok"), ("crash", "failed")]
    assert rows[1].result.startswith("exit code 3")


def test_a_unit_past_its_limit_is_stopped_and_the_next_one_runs(tmp_path, monkeypatch):
    units = (python_unit("sleeper", "import time; time.sleep(60)"), python_unit("next", emitting("ok")))
    monkeypatch.setattr(gpu, "UNITS", units)
    monkeypatch.setattr(gpu, "BUDGETS", {"sleeper": (1, 1), "next": (60, 60)})
    rows = gpu.run_all(gpu.Plan(dry_run=True, work=tmp_path))
    assert [(row.case, row.status) for row in rows] == [("sleeper", "failed"), ("a case", "ok")]
    assert "time limit of 1 s" in rows[0].result


@pytest.mark.parametrize("summary, exit_code, dry, status", [
    ("3 passed, 660 deselected in 5.1s", 0, False, "ok"),
    ("1 failed, 2 passed, 660 deselected in 5.1s", 1, False, "failed"),
    ("3 skipped, 660 deselected in 3.0s", 0, True, "skipped"),
    ("3 skipped, 660 deselected in 3.0s", 0, False, "failed"),  # on the GPU a skipped CUDA test is a failure
])
def test_pytest_summary_gives_the_status(tmp_path, summary, exit_code, dry, status):
    finished = gpu.Finished(exit_code, summary, "", 5.0, 60)
    rows = gpu.pytest_rows(gpu.Plan(dry_run=dry, work=tmp_path), finished)
    assert [row.status for row in rows] == [status]
