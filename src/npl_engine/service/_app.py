"""The FastAPI application: routes, API keys, limits, errors and access logs.

Routes only parse, check and format; the numbers come from :class:`~._scorer.Engine` in the
engine process, and the decision records are committed by the recording process
(:mod:`._process`). Errors reach clients as JSON ``{"error": ...,
"request_id": ...}``: a 422 lists each broken rule with its table, field and loan; a 500 says
only that something failed and gives the request id under which the traceback was logged.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import MutableHeaders

from npl_engine import __version__
from npl_engine.audit import bytes_fingerprint
from npl_engine.errors import NplError
from npl_engine.service._keys import ApiKeys
from npl_engine.service._logging import ACCESS_LOGGER, ERROR_LOGGER
from npl_engine.service._process import EngineProcess
from npl_engine.service._schema import REASON_TOP, Job, Loan

__all__ = ["ServiceSettings", "create_app"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_access = logging.getLogger(ACCESS_LOGGER)
_errors = logging.getLogger(ERROR_LOGGER)
_ONE: TypeAdapter[Any] = TypeAdapter(Loan)
_MANY: TypeAdapter[list[Any]] = TypeAdapter(list[Loan])  # type: ignore[valid-type]
_LOAN_REF = {"$ref": "#/components/schemas/Loan"}
_ONE_LOAN_BODY = {"required": True, "content": {"application/json": {"schema": _LOAN_REF}}}


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How the service runs.

    Parameters
    ----------
    model_dir
        Recovery model folder (``npl train``).
    effects_dir
        Effect model folder (``npl effects``) for ``/v1/recommend``; ``None`` disables it.
    audit_db
        Audit database; ``None`` records nothing (``--no-audit``).
    keys
        Accepted API keys; ``None`` serves without keys (``--no-auth``, local use only).
    max_loans
        Loans per ``/v1/score`` request at most.
    max_body_bytes
        Request body size at most.
    batch_max_loans
        Loans scored together at most.
    """

    model_dir: Path
    effects_dir: Path | None = None
    audit_db: Path | None = None
    keys: ApiKeys | None = None
    max_loans: int = 1000
    max_body_bytes: int = 2 * 2**20
    batch_max_loans: int = 512


def _error(status: int, message: str, request: Request, **extra: Any) -> JSONResponse:
    body = {"error": message, "request_id": getattr(request.state, "request_id", None), **extra}
    return JSONResponse(body, status_code=status)


#: A route served without FastAPI: (body, scope state, query string, headers) -> reply.
_Handler = Callable[[bytes, dict[str, Any], bytes, dict[bytes, bytes]], Awaitable["_Reply"]]


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()


class _Edge:
    """Outermost layer: request id, body size limit, access log, and the two scoring routes.

    The body of a POST is read here, up to the limit; a body over the limit gets a 413 without
    being read further. ``POST /v1/score`` and ``POST /v1/recommend`` are answered here
    directly (:class:`_Api`): FastAPI's dependency solving and middleware stack cost 0.3 ms of
    CPU per request, as much as the HTTP parsing, validation and answer together, on a machine
    whose two cores the engine needs. Every other request, and any other method on these paths,
    goes to the FastAPI app with its body replayed. The OpenAPI document describes both routes
    (:func:`_document`).
    """

    def __init__(
        self, app: Any, *, max_body_bytes: int, routes: dict[tuple[str, str], _Handler]
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.routes = routes
        self.paths = {path for _, path in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        size = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            if scope["method"] in {"POST", "PUT", "PATCH"}:
                body = await self._read(scope, receive)
                if body is None:
                    too_large = (
                        f"request body over {self.max_body_bytes:,} bytes; send fewer loans "
                        "per request"
                    )
                    reply = _fail(413, too_large, ((b"connection", b"close"),))
                    await _send_json(send_with_id, reply, request_id)
                    return
                size = len(body)
                handler = self.routes.get((scope["method"], scope["path"]))
                if handler is not None:
                    reply = await self._answer(handler, body, scope, request_id)
                    await _send_json(send_with_id, reply, request_id)
                    return
                receive = _replay(body)
            if scope["path"] in self.paths:  # e.g. GET /v1/score
                message = f"method not allowed; use POST {scope['path']}"
                reply = _fail(405, message, ((b"allow", b"POST"),))
                await _send_json(send_with_id, reply, request_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            # Path without the query string, and never a header: keys stay out of the logs.
            fields = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                "body_bytes": size,
                "key_id": state.get("key_id"),
                "n_loans": state.get("n_loans"),
                "client": (scope.get("client") or ("", 0))[0],
            }
            _access.info("request", extra={"fields": fields})

    @staticmethod
    async def _answer(handler: _Handler, body: bytes, scope: Scope, request_id: str) -> _Reply:
        try:
            return await handler(
                body, scope["state"], scope.get("query_string", b""), dict(scope["headers"])
            )
        except Exception as exc:
            fields = {"fields": {"request_id": request_id}}
            _errors.error("unhandled error", exc_info=exc, extra=fields)
            return _fail(500, _INTERNAL)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` as soon as it is known to be over the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks, total = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _fail(
    status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = (), **extra: Any
) -> _Reply:
    """An error reply: ``{"error", "request_id", ...}`` (:func:`_send_json` fills the id)."""
    return _Reply(status, {"error": message, "request_id": None, **extra}, headers)


async def _send_json(send: Send, reply: _Reply, request_id: str) -> None:
    """Send a reply as JSON; an error names its request, as the logs do."""
    fields = reply.body
    if "request_id" in fields:
        fields = {**fields, "request_id": request_id}
    body = json.dumps(fields).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_UNAUTHORIZED = (
    401,
    "missing or invalid API key: send it in the X-API-Key header",
    ((b"www-authenticate", b'ApiKey header="X-API-Key"'),),
)
_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def _key_id(keys: ApiKeys | None, api_key: str | None, authorization: str | None) -> str | None:
    """The caller's key id (``anonymous`` without keys), or ``None`` for no or a wrong key."""
    if keys is None:
        return "anonymous"
    if api_key is None and authorization and authorization.lower().startswith("bearer "):
        api_key = authorization[7:].strip()
    return keys.check(api_key)


class _Api:
    """``POST /v1/score`` and ``POST /v1/recommend``: key, query, body, engine, answer."""

    def __init__(self, settings: ServiceSettings, engine: EngineProcess) -> None:
        self.settings = settings
        self.engine = engine

    def _caller(self, headers: dict[bytes, bytes], state: dict[str, Any]) -> str | None:
        api_key, auth = headers.get(b"x-api-key"), headers.get(b"authorization")
        key_id = _key_id(
            self.settings.keys,
            api_key.decode("latin-1") if api_key is not None else None,
            auth.decode("latin-1") if auth is not None else None,
        )
        state["key_id"] = key_id
        return key_id

    def _loans(
        self, body: bytes, state: dict[str, Any], *, many: bool
    ) -> list[dict[str, Any]] | _Reply:
        try:
            loans, _ = _parse(body, many=many, max_loans=self.settings.max_loans)
        except ValidationError as exc:
            raw: Any
            try:
                raw = json.loads(body)
            except ValueError:
                raw = None
            return _fail(422, _BROKEN, problems=_problems(exc, raw))
        except _TooManyError as exc:
            return _fail(413, str(exc))
        except _BadBodyError as exc:
            field = "loan_id" if str(exc).startswith("loans.loan_id") else None
            problem = {"table": "loans", "field": field, "message": str(exc)}
            return _fail(422, _BROKEN, problems=[problem])
        state["n_loans"] = len(loans)
        return loans

    async def _compute(self, work: Awaitable[dict[str, Any]], state: dict[str, Any]) -> _Reply:
        try:
            return _Reply(200, await work)
        except NplError as exc:
            fields = {"fields": {"request_id": state.get("request_id")}}
            _errors.error("engine error", exc_info=exc, extra=fields)
            return _fail(503, "the request could not be computed or recorded")

    async def score(
        self, body: bytes, state: dict[str, Any], query: bytes, headers: dict[bytes, bytes]
    ) -> _Reply:
        """Score one loan or a list of loans."""
        key_id = self._caller(headers, state)
        if key_id is None:
            return _fail(*_UNAUTHORIZED)
        reasons = True
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if name == "reasons":
                try:
                    reasons = _BOOL.validate_python(value)
                except ValidationError as exc:
                    problem = {"field": "reasons", "message": exc.errors()[0]["msg"]}
                    return _fail(422, _BAD_PARAMETERS, problems=[problem])
        loans = self._loans(body, state, many=True)
        if isinstance(loans, _Reply):
            return loans
        job = Job(loans=loans, reasons=reasons, caller=key_id, fingerprint=bytes_fingerprint(body))
        return await self._compute(self.engine.score(job), state)

    async def recommend(
        self, body: bytes, state: dict[str, Any], _query: bytes, headers: dict[bytes, bytes]
    ) -> _Reply:
        """The best collection action for one loan."""
        key_id = self._caller(headers, state)
        if key_id is None:
            return _fail(*_UNAUTHORIZED)
        if self.settings.effects_dir is None:
            return _fail(
                404,
                "no effect model loaded: start the service with --effects DIR "
                "(a folder written by `npl effects`)",
            )
        loans = self._loans(body, state, many=False)
        if isinstance(loans, _Reply):
            return loans
        job = Job(loans=loans, reasons=False, caller=key_id, fingerprint=bytes_fingerprint(body))
        return await self._compute(self.engine.recommend(job), state)


#: Error messages of the scoring routes (_Api); the last two are also FastAPI handlers'.
_BROKEN = "the request breaks the data contract"
_BAD_PARAMETERS = "invalid request parameters"
_INTERNAL = "internal error; quote the request id to the operator"


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _problems(exc: ValidationError, loans: Any) -> list[dict[str, Any]]:
    """Each broken rule: table, field, loan (index and loan_id), message, offending value."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        index = loc.pop(0) if loc and isinstance(loc[0], int) else None
        field = ".".join(str(p) for p in loc) or None
        item = loans[index] if isinstance(loans, list) and isinstance(index, int) else loans
        loan_id = item.get("loan_id") if isinstance(item, dict) else None
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "is not a column of the loans table (unknown fields are refused)"
        where = f"loans.{field}" if field else "loans"
        row = f"loan_id {loan_id!r}" if loan_id is not None else None
        if index is not None:
            row = f"item {index}" + (f", {row}" if row else "")
        problem: dict[str, Any] = {
            "table": "loans",
            "field": field,
            "index": index,
            "loan_id": loan_id,
            "message": f"{where}: {message}" + (f" ({row})" if row else ""),
        }
        if err["type"] not in {"missing", "json_invalid"} and "input" in err:
            problem["input"] = err["input"] if _small(err["input"]) else "(omitted)"
        problems.append(problem)
    return problems


def _small(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(str(value)) <= 200


def _parse(body: bytes, *, many: bool, max_loans: int) -> tuple[list[dict[str, Any]], bool]:
    """Validated loans of a body (one loan, or a list when ``many``) and whether it was a list."""
    first = body.lstrip()[:1]
    if first == b"[" and many:
        loans = _MANY.validate_json(body)
        if not loans:
            raise _BadBodyError("the list of loans is empty")
        if len(loans) > max_loans:
            raise _TooManyError(f"{len(loans):,} loans in one request; at most {max_loans:,}")
        dumped = [loan.model_dump() for loan in loans]
        seen: dict[str, int] = {}
        for index, loan in enumerate(dumped):
            earlier = seen.setdefault(loan["loan_id"], index)
            if earlier != index:
                msg = (
                    f"loans.loan_id: must be unique within a request; {loan['loan_id']!r} is "
                    f"item {earlier} and item {index}"
                )
                raise _BadBodyError(msg)
        return dumped, True
    if first == b"{":
        return [_ONE.validate_json(body).model_dump()], False
    expected = "a JSON object (one loan) or an array of loans" if many else "a JSON object"
    raise _BadBodyError(f"the body must be {expected}")


class _BadBodyError(ValueError):
    pass


class _TooManyError(ValueError):
    pass


def create_app(settings: ServiceSettings) -> Any:
    """Build the ASGI application (its engine and recording processes start here, before it serves).

    Parameters
    ----------
    settings
        Models, audit database, keys and limits.

    Returns
    -------
    ASGI application
        The FastAPI app wrapped in the request-id, size-limit and access-log layer.
    """
    engine = EngineProcess(
        settings.model_dir,
        settings.effects_dir,
        settings.audit_db,
        max_loans=settings.batch_max_loans,
    )
    engine.start()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.attach()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="npl_engine scoring service",
        version=__version__,
        description="Real-time recovery scoring and collection-action recommendations for "
        "non-performing loans. Every response of /v1/score and /v1/recommend has a decision "
        "record in the audit database. See docs/service.md.",
        lifespan=lifespan,
        # No OpenTelemetry: its per-request checks cost more than a batch of scoring shares
        # per loan. Access logs and request ids are the service's own (see _Edge).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.engine = engine
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")

    # async: a plain function would be run on a thread pool, a thread hop per request.
    async def caller(request: Request, key: str | None = Depends(header_key)) -> str:
        key_id = _key_id(settings.keys, key, request.headers.get("authorization"))
        if key_id is None:
            status, message, headers = _UNAUTHORIZED
            raise HTTPException(
                status, message, headers={k.decode(): v.decode() for k, v in headers}
            )
        request.state.key_id = key_id
        return key_id

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail), request)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def query_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
            for e in exc.errors()
        ]
        return _error(422, _BAD_PARAMETERS, request, problems=problems)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        _errors.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": request_id}})
        return _error(500, _INTERNAL, request)

    card = _model_card(engine.info, settings)

    @app.get("/v1/model", summary="Model card and versions")
    async def model(_: str = Depends(caller)) -> JSONResponse:
        """The recovery model's card, provenance and metrics; the effect model's, if loaded."""
        return JSONResponse(card)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> JSONResponse:
        """200 while the service and both its child processes run; 503 once either stopped."""
        if engine.alive:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "engine stopped"}, status_code=503)

    @app.get("/readyz", summary="Readiness")
    async def readyz() -> JSONResponse:
        """200 once the models are loaded and the audit database is open; 503 otherwise."""
        if engine.alive:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    _document(app, settings)
    api = _Api(settings, engine)
    routes: dict[tuple[str, str], _Handler] = {
        ("POST", "/v1/score"): api.score,
        ("POST", "/v1/recommend"): api.recommend,
    }
    return _Edge(app, max_body_bytes=settings.max_body_bytes, routes=routes)


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key."},
    413: {"description": "Body over the size limit, or too many loans."},
    422: {"description": "The loans break the data contract; each problem names its field."},
}


def _body_schema(max_loans: int) -> dict[str, Any]:
    many = {"type": "array", "items": _LOAN_REF, "minItems": 1, "maxItems": max_loans}
    return {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [_LOAN_REF, many]}}},
    }


def _document(app: FastAPI, settings: ServiceSettings) -> None:
    """Add the scoring routes (served by _Edge) and the Loan schema to the OpenAPI document."""
    base = app.openapi
    security: list[dict[str, list[str]]] = (
        [{"APIKeyHeader": []}] if settings.keys is not None else []
    )
    errors = {str(code): value for code, value in _ERROR_RESPONSES.items()}
    answer = {"content": {"application/json": {"schema": {"type": "object"}}}}
    paths = {
        "/v1/score": {
            "post": {
                "summary": "Score one loan or a list of loans",
                "description": "Per loan: p_recover, expected collections and recovery rate, "
                "the exposure, the top reason codes (unless `reasons=false`) and the id of the "
                "loan's decision record.",
                "operationId": "score_v1_score_post",
                "security": security,
                "parameters": [
                    {
                        "name": "reasons",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean", "default": True, "title": "Reasons"},
                        "description": f"Add the top {REASON_TOP} reason codes per output.",
                    }
                ],
                "requestBody": _body_schema(settings.max_loans),
                "responses": {"200": {"description": "Scores.", **answer}, **errors},
            }
        },
        "/v1/recommend": {
            "post": {
                "summary": "The best collection action for one loan",
                "description": "The action with the largest expected uplift net of cost "
                "(`none` if no action pays), every action's expected uplift and cost beside "
                "it, from the effect model (`--effects`).",
                "operationId": "recommend_v1_recommend_post",
                "security": security,
                "requestBody": _ONE_LOAN_BODY,
                "responses": {
                    "200": {"description": "The recommendation.", **answer},
                    **errors,
                    "404": {"description": "No effect model loaded."},
                },
            }
        },
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            schema.setdefault("paths", {}).update(paths)
            loan = _ONE.json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {})["Loan"] = loan
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _model_card(engine: dict[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """What ``/v1/model`` returns; computed once (``engine``: what the engine process describes)."""
    meta = json.loads((settings.model_dir / "model.json").read_text())
    card_file = settings.model_dir / "model_card.md"
    out: dict[str, Any] = {
        "engine_version": __version__,
        "recovery_model": {
            "fingerprint": engine["model_fingerprint"],
            "info": meta["info"],
            "definition": meta["definition"],
            "metrics": meta["metrics"].get("classification", {}),
            "features": meta["feature_names"],
            "card_markdown": card_file.read_text() if card_file.is_file() else None,
        },
        "effect_model": None,
        "limits": {
            "max_loans_per_request": settings.max_loans,
            "max_body_bytes": settings.max_body_bytes,
        },
        "auth": "api_key" if settings.keys is not None else "none",
        "audit": settings.audit_db is not None,
    }
    if settings.effects_dir is not None:
        info_file = settings.effects_dir / "effect_model.json"
        out["effect_model"] = {
            "fingerprint": engine["effects_fingerprint"],
            "info": json.loads(info_file.read_text()) if info_file.is_file() else None,
            "actions": engine["actions"],
            "costs": engine["costs"],
        }
    return out
