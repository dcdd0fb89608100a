"""Service load test: single-loan scoring over HTTP on 127.0.0.1, 50 concurrent clients.

``npl serve`` runs as its own processes (API keys on, decision records written, as in
production; its engine process picks its own thread settings) with a model trained on the
20,000-loan simulated book of the scoring benchmark (``--no-baselines``; cached under
``benchmarks/_data``). A bounded loop of requests (10,000 per phase; 1,500 in quick mode),
each carrying one loan drawn in turn from a simulated tape, is sent from 50 concurrent
clients (one keep-alive connection each, one event loop in this process: ``_loadgen.py``,
a few microseconds of Python per request) after 200 warm-up requests on the same
connections. Three phases:

- baseline: ``GET /healthz`` (parsing, routing and the access log; no scoring), the cost of
  the HTTP stack alone on this machine;
- ``POST /v1/score?reasons=false``: target p99 under 50 ms;
- ``POST /v1/score`` with reason codes: target p99 under 150 ms.

Any non-200 answer or client error counts as an error; the target is zero. Client and server
share the machine's two cores, so the client's own work is inside the figures, as it is in the
baseline. The first version of this benchmark used httpx, whose half a millisecond of Python
per request took a core of its own: it measured the client (docs/service.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import BenchConfig, BenchResult, at_most, npl_env, simulated_dataset
from _loadgen import request_bytes, run_load

CLIENTS = 50
REQUESTS_FULL, REQUESTS_QUICK = 10_000, 1_500
WARMUP = 200
BOOK, BOOK_SEED = 20_000, 1
TAPE, TAPE_SEED = 1_000, 9
_COMMAND = "from npl_engine.cli import main; main()"


def _npl(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env or npl_env(),
    )
    return done.stdout


def _ensure(config: BenchConfig) -> tuple[Path, Path]:
    """The model folder and the tape, made once and cached."""
    book = simulated_dataset(config, "scoring", BOOK, BOOK_SEED, "book")
    model = config.data_dir / f"service_model_{BOOK}"
    if not (model / "model.json").is_file():
        _npl("train", "--data", str(book), "--out", str(model), "--no-baselines")
    tape = simulated_dataset(config, "service", TAPE, TAPE_SEED, "tape")
    return model, tape


def _bodies(tape: Path) -> list[bytes]:
    import polars as pl

    rows = json.loads(pl.read_parquet(tape / "loans.parquet").write_json())
    return [json.dumps(row).encode() for row in rows]


def _phase(port: int, key: str, path: str, bodies: list[bytes] | None, n: int) -> dict[str, Any]:
    headers = {"x-api-key": key, "content-type": "application/json"}
    host = f"127.0.0.1:{port}"
    if bodies is None:
        requests = [request_bytes("GET", path, host=host, headers=headers)]
    else:
        requests = [request_bytes("POST", path, host=host, headers=headers, body=b) for b in bodies]
    result = run_load("127.0.0.1", port, requests, n=n, clients=CLIENTS, warmup=WARMUP)
    return {
        "throughput": result.throughput,
        "p50_ms": result.percentile_ms(50),
        "p99_ms": result.percentile_ms(99),
        "errors": result.errors,
        "n": n,
    }


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"npl serve exited with code {process.returncode}"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    msg = "npl serve did not become ready"
    raise RuntimeError(msg)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service(config: BenchConfig) -> list[BenchResult]:
    """Throughput and p50 / p99 latency of single-loan scoring, reason codes off and on."""
    model, tape = _ensure(config)
    bodies = _bodies(tape)
    n = REQUESTS_QUICK if config.quick else REQUESTS_FULL
    with tempfile.TemporaryDirectory() as tmp:
        keys_file = Path(tmp) / "keys.json"
        env = npl_env(NPL_API_KEYS_FILE=str(keys_file))
        key = _npl("keys", "create", "--name", "bench", env=env).strip().splitlines()[-1]
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = (Path(tmp) / "serve.log").open("wb")
        args = ["serve", "--model", str(model), "--port", str(port)]
        args += ["--audit-db", str(Path(tmp) / "audit.duckdb")]
        process = subprocess.Popen(
            [sys.executable, "-c", _COMMAND, *args], env=env, stdout=log, stderr=log
        )
        try:
            _wait_ready(url, process)
            base = _phase(port, key, "/healthz", None, n)
            plain = _phase(port, key, "/v1/score?reasons=false", bodies, n)
            reasons = _phase(port, key, "/v1/score", bodies, n)
        finally:
            process.terminate()
            process.wait(timeout=60)
            log.close()
    quick = config.quick
    rows: list[BenchResult] = []
    for label, figures, p99_target in (
        ("reason codes off", plain, 50.0),
        ("reason codes on", reasons, 150.0),
    ):
        common = f"{figures['n']:,} requests, {CLIENTS} clients, one loan each"
        rows += [
            BenchResult(
                name=f"service /v1/score, {label}: p99 latency",
                value=figures["p99_ms"],
                unit="ms",
                target=None if quick else at_most(p99_target),
                baseline_name="GET /healthz p99",
                baseline_value=base["p99_ms"],
                notes=f"{common}; p50 {figures['p50_ms']:.1f} ms (healthz {base['p50_ms']:.1f})",
            ),
            BenchResult(
                name=f"service /v1/score, {label}: throughput",
                value=figures["throughput"],
                unit="req/s",
                target=None,
                baseline_name="GET /healthz",
                baseline_value=base["throughput"],
                notes=f"{common}; decision records written",
            ),
            BenchResult(
                name=f"service /v1/score, {label}: errors",
                value=float(figures["errors"]),
                unit="requests",
                target=at_most(0.0),
                notes=f"non-200 answers or client errors out of {figures['n']:,}",
            ),
        ]
    return rows


BENCHMARKS = [service]
