"""The scoring service through real HTTP on loopback: numbers, records, keys, refusals, errors."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from npl_engine.audit import AuditStore, files_fingerprint
from npl_engine.causal import ActionEffectModel
from npl_engine.causal._policy import ActionCosts, policy_inputs
from npl_engine.cli import main
from npl_engine.data import write_dataset
from npl_engine.data.contract import SEGMENTS
from npl_engine.explain import explain_loans, reason_codes
from npl_engine.scoring import RecoveryModel
from npl_engine.service import ServiceSettings
from npl_engine.service._process import EngineProcess
from service._server import Server, as_json, start_server

TOL = 1e-12


def _score(server: Server, body: Any, *, reasons: bool = True) -> httpx.Response:
    with server.client() as client:
        return client.post("/v1/score", params={"reasons": str(reasons).lower()}, json=body)


def test_scores_are_the_cli_scores(server: Server, tape: pl.DataFrame, tmp_path: Path) -> None:
    """A list of 200 loans scores exactly as `npl score` scores the same tape."""
    loans = tape.head(200)
    write_dataset(tmp_path / "tape", loans=loans)
    model = server.settings.model_dir
    cli = CliRunner().invoke(
        main,
        ["score", "--model", str(model), "--data", str(tmp_path / "tape"),
         "--out", str(tmp_path / "scores"), "--no-audit"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    expected = pl.read_parquet(tmp_path / "scores" / "scores.parquet")
    response = _score(server, as_json(loans), reasons=False)
    assert response.status_code == 200, response.text
    got = pl.DataFrame(response.json()["results"])
    assert got["loan_id"].to_list() == expected["loan_id"].to_list()
    for column in ("p_recover", "expected_collections", "expected_recovery_rate", "exposure"):
        np.testing.assert_allclose(got[column], expected[column], rtol=TOL, err_msg=column)
    assert "reasons" not in got.columns


def test_reason_codes_are_the_explain_reason_codes(server: Server, tape: pl.DataFrame) -> None:
    """Reason codes of a 20-loan request are `reason_codes(explain_loans(...))` of those loans."""
    loans = tape.slice(10, 20)
    response = _score(server, as_json(loans))
    assert response.status_code == 200, response.text
    model = RecoveryModel.load(server.settings.model_dir)
    codes = reason_codes(explain_loans(model, loans), top=3)
    for item in response.json()["results"]:
        mine = codes.filter(pl.col("loan_id") == item["loan_id"])
        for target in ("p_recover", "expected_collections"):
            texts = mine.filter(pl.col("target") == target)["text"].to_list()
            assert item["reasons"][target] == texts


def test_one_loan_at_a_time_under_concurrency(server: Server, tape: pl.DataFrame) -> None:
    """40 concurrent one-loan requests (some the same loan) each get their own loan's numbers.

    Batching must not mix loans between requests: each result equals the model's score of
    that loan, and its one-loan reason codes equal explaining that loan alone.
    """
    loans = tape.slice(50, 30)
    bodies = as_json(loans) + as_json(loans.head(10))
    model = RecoveryModel.load(server.settings.model_dir)
    expected = model.score(loans.lazy()).scores

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=server.url, headers={"X-API-Key": server.key}, timeout=60
        ) as client:
            calls = [client.post("/v1/score", json=body) for body in bodies]
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for body, response in zip(bodies, responses, strict=True):
        (item,) = response.json()["results"]
        assert item["loan_id"] == body["loan_id"]
        row = expected.filter(pl.col("loan_id") == body["loan_id"]).row(0, named=True)
        assert item["p_recover"] == pytest.approx(row["p_recover"], rel=TOL)
        assert item["expected_collections"] == pytest.approx(row["expected_collections"], rel=TOL)
    one = loans.head(1)
    alone = reason_codes(explain_loans(model, one), top=3)
    (first,) = responses[0].json()["results"]
    assert (
        first["reasons"]["p_recover"]
        == alone.filter(pl.col("target") == "p_recover")["text"].to_list()
    )


def test_every_result_has_its_decision_record(
    server: Server, tape: pl.DataFrame, tmp_path: Path
) -> None:
    """The decision ids returned exist, with the caller's key id, the body's hash and outputs."""
    body = as_json(tape.slice(100, 3))
    # A service of its own: the engine process holds its audit database until it stops.
    settings = dataclasses.replace(server.settings, audit_db=tmp_path / "audit.duckdb")
    running = start_server(settings, key=server.key, key_id=server.key_id)
    try:
        with running.client() as client:
            response = client.post("/v1/score", json=body)
    finally:
        running.stop()
    assert response.status_code == 200, response.text
    raw = response.request.content
    run_id = response.json()["run_id"]
    assert [r["decision_id"] for r in response.json()["results"]] == [
        f"{run_id}:{i}" for i in (1, 2, 3)
    ]
    assert settings.audit_db is not None
    with AuditStore(settings.audit_db) as store:
        run = store.run(run_id)
        rows = store.decisions(run_id)
    assert run is not None
    assert run["caller"] == server.key_id
    assert run["caller_kind"] == "api_key"
    assert run["command"] == "serve:score"
    assert run["input_fingerprint"] == hashlib.sha256(raw).hexdigest()
    assert run["model_fingerprint"] == files_fingerprint(server.settings.model_dir)
    assert rows["loan_id"].to_list() == [b["loan_id"] for b in body]
    for item, outputs, reasons in zip(
        response.json()["results"], rows["outputs"], rows["reasons"], strict=True
    ):
        assert json.loads(outputs)["p_recover"] == item["p_recover"]
        assert json.loads(reasons) == item["reasons"]


def test_keys_are_required(server: Server, tape: pl.DataFrame) -> None:
    """No key or a wrong key: 401; a Bearer key works; health needs none."""
    body = as_json(tape.head(1))[0]
    with server.client(headers={}) as client:
        missing = client.post("/v1/score", json=body)
        wrong = client.post("/v1/score", json=body, headers={"X-API-Key": server.key + "x"})
        bearer = client.post(
            "/v1/score", json=body, headers={"Authorization": f"Bearer {server.key}"}
        )
        card = client.get("/v1/model")
        health = client.get("/healthz")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("ApiKey")
    assert "API key" in missing.json()["error"]
    assert wrong.status_code == 401
    assert bearer.status_code == 200
    assert card.status_code == 401
    assert health.status_code == 200


def _broken(tape: pl.DataFrame, change: dict[str, Any], drop: str | None = None) -> Any:
    loan = as_json(tape.head(1))[0] | change
    if drop:
        del loan[drop]
    return [loan]


@pytest.mark.parametrize(
    "case",
    [
        ({"outstanding_principal": "lots"}, None, "outstanding_principal", "valid number"),
        ({}, "region", "region", "Field required"),
        ({"segment": "yacht"}, None, "segment", "residential_mortgage"),
        ({"days_past_due": 3.5}, None, "days_past_due", "valid integer"),
        ({"credit_score": 900}, None, "credit_score", "less than or equal to 850"),
        ({"default_date": "2030-01-01"}, None, "default_date", "on or before cutoff_date"),
        ({"cutoff_date": "30/09/2026"}, None, "cutoff_date", "valid date"),
        ({"credit_scor": 700}, None, "credit_scor", "not a column of the loans table"),
    ],
)
def test_contract_violations_are_422_naming_the_field(
    server: Server, tape: pl.DataFrame, case: tuple[dict[str, Any], str | None, str, str]
) -> None:
    """A wrong type, a missing field, an unknown enum value...: 422 naming table, field and loan."""
    change, drop, field, words = case
    body = _broken(tape, change, drop)
    response = _score(server, body)
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert [p["field"] for p in problems] == [field]
    (problem,) = problems
    assert problem["table"] == "loans"
    assert problem["index"] == 0
    assert problem["loan_id"] == body[0]["loan_id"]
    assert problem["message"].startswith(f"loans.{field}: ")
    assert words in problem["message"]
    assert body[0]["loan_id"] in problem["message"]


def test_request_level_refusals(server: Server, tape: pl.DataFrame) -> None:
    """Duplicate loan_ids, an empty list and a body that is not JSON: 422 with a message."""
    loans = as_json(tape.head(2))
    loans[1]["loan_id"] = loans[0]["loan_id"]
    twice = _score(server, loans)
    assert twice.status_code == 422
    assert twice.json()["problems"][0]["field"] == "loan_id"
    assert "item 0 and item 1" in twice.json()["problems"][0]["message"]
    assert _score(server, []).status_code == 422
    with server.client() as client:
        garbage = client.post("/v1/score", content=b"{not json")
        text = client.post("/v1/score", content=b'"a loan"')
    assert garbage.status_code == 422
    assert text.status_code == 422
    assert "JSON object" in text.json()["problems"][0]["message"]


def test_a_bad_query_or_method_is_refused_by_name(server: Server, tape: pl.DataFrame) -> None:
    """reasons=maybe: 422 naming the parameter; GET on a POST route: 405 with Allow."""
    body = as_json(tape.head(1))[0]
    with server.client() as client:
        maybe = client.post("/v1/score", params={"reasons": "maybe"}, json=body)
        yes = client.post("/v1/score", params={"reasons": "yes"}, json=body)
        get = client.get("/v1/score")
    assert maybe.status_code == 422
    assert maybe.json()["problems"][0]["field"] == "reasons"
    assert maybe.json()["request_id"] == maybe.headers["x-request-id"]
    assert yes.status_code == 200
    assert "reasons" in yes.json()["results"][0]
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"


def test_oversized_bodies_are_413(server: Server, tape: pl.DataFrame) -> None:
    """A body over the byte limit, or more loans than allowed: 413, nothing scored."""
    with server.client() as client:
        huge = client.post("/v1/score", content=b"[" + b" " * 1_100_000 + b"]")
        chunked = client.post("/v1/score", content=iter([b"[", b" " * 1_100_000, b"]"]))
    assert huge.status_code == 413
    assert "1,000,000 bytes" in huge.json()["error"]
    assert chunked.status_code == 413
    many = as_json(tape.head(1)) * 501
    for i, loan in enumerate(many):
        many[i] = loan | {"loan_id": f"X{i}"}
    response = _score(server, many, reasons=False)
    assert response.status_code == 413
    assert "at most 500" in response.json()["error"]


def test_internal_errors_never_show_a_trace(
    server: Server,
    tape: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected failure: a generic 500 with the request id; the trace only in the log."""

    async def broken(*_: object, **__: object) -> None:
        msg = "secret internal detail"
        raise RuntimeError(msg)

    monkeypatch.setattr(EngineProcess, "score", broken)
    with caplog.at_level(logging.INFO, logger="npl_engine.service"):
        response = _score(server, as_json(tape.head(1)))
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if r.name == "npl_engine.service.error"]
    assert logged
    assert logged[0].fields["request_id"] == body["request_id"]  # type: ignore[attr-defined]


def test_access_logs_are_structured_and_keep_keys_out(
    server: Server, tape: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """One access record per request with status, timing and key id; never the key itself."""
    with caplog.at_level(logging.INFO, logger="npl_engine.service"):
        response = _score(server, as_json(tape.head(1)), reasons=False)
        # The record is written once the response is sent: the client may have it first.
        deadline = time.monotonic() + 10
        while not (access := _access_records(caplog)) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert response.status_code == 200
    fields = access[-1].fields  # type: ignore[attr-defined]
    assert fields["status"] == 200
    assert fields["path"] == "/v1/score"
    assert fields["key_id"] == server.key_id
    assert fields["n_loans"] == 1
    assert fields["request_id"] == response.headers["x-request-id"]
    assert isinstance(fields["duration_ms"], float)
    for record in caplog.records:
        assert server.key not in record.getMessage()
        assert server.key not in json.dumps(getattr(record, "fields", {}), default=str)


def _access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "npl_engine.service.access"]


def test_recommend_gives_the_best_net_action(server: Server, tape: pl.DataFrame) -> None:
    """/v1/recommend picks the action with the largest expected uplift net of cost."""
    loan = tape.slice(5, 1)
    with server.client() as client:
        response = client.post("/v1/recommend", json=as_json(loan)[0])
    assert response.status_code == 200, response.text
    got = response.json()
    assert server.settings.effects_dir is not None
    effects = ActionEffectModel.load(server.settings.effects_dir)
    raw = json.loads((server.settings.effects_dir / "costs.json").read_text())
    costs = ActionCosts.from_dict(raw)
    inputs = policy_inputs(effects, loan.lazy(), costs, with_bau=False)
    uplift, cost = inputs.uplift, inputs.cost
    net = uplift[0] - cost[0]
    best = int(np.argmax(net))
    expected = effects.actions_[best] if net[best] > 0 else "none"
    assert got["action"] == expected
    assert [a["action"] for a in got["alternatives"]] == list(effects.actions_)
    np.testing.assert_allclose([a["expected_net"] for a in got["alternatives"]], net, rtol=TOL)
    assert got["decision_id"].endswith(":1")


def test_model_card_health_and_docs(server: Server) -> None:
    """/v1/model shows the model's card and fingerprint; /readyz is ready; /docs is served."""
    with server.client() as client:
        card = client.get("/v1/model").json()
        ready = client.get("/readyz")
        docs = client.get("/docs")
        schema = client.get("/openapi.json").json()
    assert card["recovery_model"]["fingerprint"] == files_fingerprint(server.settings.model_dir)
    assert "lightgbm" in card["recovery_model"]["card_markdown"].lower()
    assert card["effect_model"]["actions"]
    assert card["limits"]["max_loans_per_request"] == 500
    assert ready.status_code == 200
    assert docs.status_code == 200
    score = schema["paths"]["/v1/score"]["post"]
    assert score["parameters"][0]["name"] == "reasons"
    assert score["security"] == [{"APIKeyHeader": []}]
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]
    assert schema["paths"]["/v1/recommend"]["post"]["requestBody"]["required"]
    loan = schema["components"]["schemas"]["Loan"]
    assert loan["properties"]["segment"]["enum"] == list(SEGMENTS)
    assert "region" in loan["required"]


def test_without_effects_recommend_is_404_and_no_auth_serves(
    models: Path, tape: pl.DataFrame
) -> None:
    """Started without --effects: /v1/recommend says how to enable it; --no-auth needs no key."""
    running = start_server(ServiceSettings(model_dir=models / "model"))
    try:
        with running.client(headers={}) as client:
            response = client.post("/v1/recommend", json=as_json(tape.head(1))[0])
            scored = client.post("/v1/score?reasons=false", json=as_json(tape.head(1))[0])
    finally:
        running.stop()
    assert response.status_code == 404
    assert "--effects" in response.json()["error"]
    assert scored.status_code == 200
    assert scored.json()["results"][0]["decision_id"] is None


def test_keys_create_stores_only_a_hash(tmp_path: Path, models: Path) -> None:
    """`npl keys create` prints the key once and stores its hash; `npl serve` needs a key."""
    keys_file = tmp_path / "keys.json"
    result = CliRunner().invoke(
        main, ["keys", "create", "--name", "app", "--keys-file", str(keys_file)]
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("npl_")
    stored = keys_file.read_text()
    assert key not in stored
    assert hashlib.sha256(key.encode()).hexdigest() in stored
    assert keys_file.stat().st_mode & 0o077 == 0
    refused = CliRunner().invoke(
        main,
        ["serve", "--model", str(models / "model"), "--keys-file", str(tmp_path / "none.json")],
    )
    assert refused.exit_code == 2
    assert "npl keys create" in refused.output
