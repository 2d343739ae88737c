"""The scripted model's trouble, models and price on a real OpenCode 1.18.33, through `ocm
run`: a task's record gets the cost OpenCode computed from the config's price, and the
errors the record keeps are classified as limits/recovery.py expects (2.x:
test_on_opencode2.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from opencode_manager.limits import Trouble, classify
from opencode_manager.scripted_model import BROKEN_MODEL, GOOD_MODEL, ScriptedModelServer

from conftest import Fleet
from helpers import run_ocm

pytestmark = pytest.mark.integration


def run(fleet: Fleet, prompt: str, model: str) -> tuple[int, dict[str, Any]]:
    result = run_ocm("run", "-i", "oc-1", "--model", model, "--json", prompt, env=fleet.env)
    assert result.stdout, str(result)
    record = result.json()
    assert isinstance(record, dict)
    return result.returncode, record


def test_a_priced_model_gives_the_task_record_its_cost(fleet: Fleet) -> None:
    code, record = run(fleet, f"USAGE 100000 2000 price me {uuid.uuid4().hex[:8]}", GOOD_MODEL)
    assert code == 0, record
    assert record["status"] == "completed"
    assert (record["tokens"]["input"], record["tokens"]["output"]) == (100000, 2000)
    # $3 per million in, $15 per million out (PRICE): 0.3 + 0.03.
    assert record["cost"] == pytest.approx(0.33)


def test_the_broken_model_is_a_refusal(fleet: Fleet) -> None:
    code, record = run(fleet, f"hello {uuid.uuid4().hex[:8]}", BROKEN_MODEL)
    assert (code, record["status"]) == (10, "failed")
    found = classify(record["error"])
    assert found is not None
    assert (found.trouble, found.status, found.name) == (Trouble.REFUSED, 400, "APIError")
    assert "refuses every request" in found.message


def test_a_rate_limit_past_opencodes_own_retries_is_transient(
    fleet: Fleet, model: ScriptedModelServer
) -> None:
    prompt = f"RATELIMIT 9 0.01 {uuid.uuid4().hex[:8]}"
    code, record = run(fleet, prompt, GOOD_MODEL)
    assert (code, record["status"]) == (10, "failed")
    found = classify(record["error"])
    assert found is not None
    assert (found.trouble, found.status) == (Trouble.TRANSIENT, 429)
    assert found.retry_after == pytest.approx(0.01)  # retry-after-ms, from the headers kept
    # OpenCode 1.x asked 6 times (5 retries), each answered 429 with the retry-after asked.
    asked = [r for r in model.requests.entries() if r["last_user_text"] == prompt]
    assert [(r["behaviour"], r["status"]) for r in asked] == [("ratelimit", 429)] * 6


def test_a_short_rate_limit_is_absorbed_by_opencodes_retries(
    fleet: Fleet, model: ScriptedModelServer
) -> None:
    prompt = f"RATELIMIT 2 0.05 {uuid.uuid4().hex[:8]}"
    code, record = run(fleet, prompt, GOOD_MODEL)
    assert (code, record["status"]) == (0, "completed")
    assert record["cost"] > 0
    asked = [r["status"] for r in model.requests.entries() if r["last_user_text"] == prompt]
    assert asked == [429, 429, 200]
