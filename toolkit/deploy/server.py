"""Serve a :class:`~toolkit.monitoring.ModelRegistry`'s production version over HTTP with LitServe.

The HTTP server is LitServe's (FastAPI and uvicorn underneath); this module supplies the model side
(a ``LitAPI``) and the contract:

- ``POST /predict`` with ``{"inputs": [...], "request_id": "...", "targets": [...]}`` (a batch of
  inputs in the model's input shape; ``request_id`` and ``targets`` optional) answers
  ``{"probs", "labels", "confidence", "model_version", "request_id"}``. The request id may come in the
  body or in an ``X-Request-ID`` header (the two must agree when both are sent); without either the
  server makes one. Its value routes the canary, and it is echoed in the response's ``X-Request-ID``. The version's normalization
  ``(x - mean) / std`` is applied to the inputs; the probabilities are calibrated (the temperature is
  inside the exported graph).
- A bad request (missing key, wrong shape or length, non-numbers, NaN/Inf, more inputs than
  ``max_inputs``, malformed JSON) is refused with 422 and ``{"detail": "...", "errors": [...]}``
  naming the field and the problem, before it reaches the model; the server keeps serving.
- ``GET /health``: ``{"status": "ok", "version": ...}`` (503 while starting); ``GET /metrics``:
  Prometheus text (requests, errors, latency histogram, per-version traffic, live drift).
- LitServe's dynamic batching (``max_batch_size``, ``batch_timeout_s``) merges concurrent requests
  into one model call.
- Versions: the worker watches the registry's manifest and swaps in a newly promoted (or rolled
  back) version within ``reload_interval_s``: the new model is loaded and verified (SHA-256) first,
  then one reference assignment replaces the old, and each batch uses the model it started with, so
  no request meets a half-loaded model. There is no admin endpoint: versions change through the
  registry (``python -m toolkit registry promote|rollback``).
- Shadow and canary: see :mod:`toolkit.deploy.rollout`. With several LitServe workers
  (``workers``), each worker gates the canary traffic it answers; the first worker whose gate fires
  creates ``canary_stopped.json`` in the run folder (an exclusive create, so exactly one incident is
  written) and every worker checks that file before each batch, so the rollback holds for all of
  them from the next batch on.
- Live monitoring: the drift detectors of :mod:`toolkit.monitoring` (Kolmogorov-Smirnov per feature
  with Bonferroni, and a permutation test on the confidence) on a sliding window of served inputs
  against the reference sample registered with the version.

Back ends: ONNX Runtime on the CPU (default) or PyTorch (the ``torch.export`` program).

Example (a shell)::

    python -m toolkit serve --registry runs/registry --host 127.0.0.1 --port 8000
    curl -s -X POST 127.0.0.1:8000/predict -d '{"inputs": [[0.0, 0.1, ...]]}'
"""

import json
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import litserve as ls
import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, StrictInt, field_validator, model_validator

from toolkit.deploy.live import DRIFT_ALPHA, DRIFT_EVERY, DRIFT_PERMUTATIONS, DRIFT_WINDOW, LiveDrift
from toolkit.deploy.rollout import CanaryMonitor, append_jsonl, in_canary, utc_now

__all__ = ["BACKENDS", "ClassifierAPI", "PredictRequest", "build_server", "serve"]

BACKENDS = ("onnx", "torch")
MAX_INPUTS = 256             # inputs per request
MAX_BATCH_SIZE = 16          # requests merged into one model call by LitServe
BATCH_TIMEOUT_S = 0.005      # how long LitServe waits to fill a batch
RELOAD_INTERVAL_S = 0.5      # how often the worker looks at the registry's manifest
STATE_FILE = "state.json"
SHADOW_LOG = "shadow.jsonl"
INCIDENT_LOG = "incidents.jsonl"
CANARY_STOP_FILE = "canary_stopped.json"
REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID_CHARS = 128
WORKERS = 1                  # LitServe worker processes
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024
_LOG = logging.getLogger(__name__)


# ---- the request, validated in the HTTP process ------------------------------------------------------
def validate_inputs(inputs: Any, shape: Sequence[int] | None, max_inputs: int) -> np.ndarray:
    """``inputs`` as a float32 array ``(n, *shape)``, or a ``ValueError`` that says what is wrong."""
    expected = "a list of inputs" + (f", each of shape {list(shape)}" if shape is not None else "")
    if not isinstance(inputs, list):
        raise ValueError(f"must be {expected}, got {type(inputs).__name__}")
    if not inputs:
        raise ValueError(f"is empty: send {expected}")
    if len(inputs) > max_inputs:
        raise ValueError(f"holds {len(inputs)} inputs, more than the limit of {max_inputs} per request")
    try:
        array = np.asarray(inputs)
    except (ValueError, TypeError):
        raise ValueError(f"is ragged or mixes types: send {expected}") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"must hold numbers only (found {'booleans' if array.dtype.kind == 'b' else 'non-numbers'}); "
                         f"send {expected}")
    if shape is not None and list(array.shape[1:]) != list(shape):
        raise ValueError(f"each input must have shape {list(shape)}, got {list(array.shape[1:])}")
    array = array.astype(np.float32)
    finite = np.isfinite(array.reshape(len(array), -1)).all(1)
    if not finite.all():
        raise ValueError(f"contains NaN or infinite values (inputs {np.flatnonzero(~finite)[:10].tolist()})")
    return array


# the X-Request-ID of the request being validated (set by the middleware, read by the validator, which
# writes back the id the request ends up with so the middleware can echo it)
_REQUEST_ID: ContextVar[dict | None] = ContextVar("toolkit_request_id", default=None)


def _check_request_id(value: str, where: str) -> str:
    if not value or len(value) > MAX_REQUEST_ID_CHARS or not value.isprintable() or not value.isascii():
        raise ValueError(f"{where} must be 1 to {MAX_REQUEST_ID_CHARS} printable ASCII characters, got {value[:40]!r}")
    return value


class PredictRequest(BaseModel):
    """The body of ``POST /predict``: ``inputs`` (required), ``request_id`` and ``targets`` (optional)."""

    inputs: Any
    request_id: str | None = None
    targets: list[StrictInt] | None = None

    limits: ClassVar[dict[str, Any]] = {"shape": None, "max_inputs": MAX_INPUTS, "num_classes": None}

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: Any) -> np.ndarray:
        return validate_inputs(value, cls.limits["shape"], cls.limits["max_inputs"])

    @model_validator(mode="after")
    def _request_id(self) -> "PredictRequest":
        holder = _REQUEST_ID.get()
        header = None if holder is None else holder["header"]
        if header is not None:
            _check_request_id(header, "the X-Request-ID header")
        if self.request_id is not None:
            _check_request_id(self.request_id, "request_id")
            if header is not None and header != self.request_id:
                raise ValueError(f"request_id {self.request_id!r} differs from the X-Request-ID header {header!r}: "
                                 "send one of them, or the same id in both")
        self.request_id = self.request_id or header or uuid.uuid4().hex
        if holder is not None:
            holder["id"] = self.request_id
        return self

    @model_validator(mode="after")
    def _targets(self) -> "PredictRequest":
        if self.targets is not None:
            if len(self.targets) != len(self.inputs):
                raise ValueError(f"targets must have one label per input ({len(self.inputs)}), got {len(self.targets)}")
            num_classes = self.limits["num_classes"]
            if num_classes is not None and not all(0 <= t < num_classes for t in self.targets):
                raise ValueError(f"targets must be class indices in [0, {num_classes - 1}], got {self.targets}")
        return self


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            loc, message = ["body"], f"malformed JSON ({error.get('ctx', {}).get('error', 'cannot be parsed')})"
        elif error.get("type") == "missing":
            message = "is required"
        elif error.get("type") in ("model_attributes_type", "dict_type"):
            loc, message = ["body"], 'must be a JSON object such as {"inputs": [...]}'
        errors.append({"field": ".".join(loc) or "body", "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": detail, "errors": errors})


# ---- metrics ---------------------------------------------------------------------------------------
def _use_multiprocess_metrics(directory: Path) -> None:
    """Point prometheus_client at ``directory`` so the HTTP and worker processes share metrics."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # in case prometheus_client was imported before


class _HttpMetrics:
    """Pure ASGI middleware in the HTTP process: requests, errors and latency per path; the body of
    ``/predict`` is read as JSON whatever its declared content type."""

    def __init__(self, app: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.app = app
        self.requests = Counter("toolkit_http_requests", "HTTP requests", ["path", "status"])
        self.errors = Counter("toolkit_http_errors", "HTTP requests answered with status >= 400", ["path", "status"])
        self.latency = Histogram("toolkit_http_request_duration_seconds", "Latency of HTTP requests", ["path"],
                                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), {"code": 500}
        holder: dict[str, str | None] = {"header": None, "id": None}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                echoed = holder["id"] or holder["header"]
                if echoed is not None and echoed.isascii() and echoed.isprintable():
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (REQUEST_ID_HEADER.encode(), echoed.encode())]}
            await send(message)

        token = None
        if scope.get("path") == "/predict":  # the body is JSON whatever the client declared (curl -d: a form)
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
            for key, value in headers:
                if key.lower() == REQUEST_ID_HEADER.encode():
                    holder["header"] = value.decode("latin-1")
            token = _REQUEST_ID.set(holder)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if token is not None:
                _REQUEST_ID.reset(token)
            path = scope.get("path", "")
            path = path if path in ("/predict", "/health", "/metrics") else "other"
            code = str(status["code"])
            self.requests.labels(path, code).inc()
            if status["code"] >= 400:
                self.errors.labels(path, code).inc()
            self.latency.labels(path).observe(time.perf_counter() - start)


class _ModelMetrics:
    """Worker-side metrics: traffic per version and role, drift, shadow agreement, canary, reloads."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.batch = Histogram("toolkit_batch_requests", "Requests merged into one model call (dynamic batching)",
                               buckets=(1, 2, 4, 8, 16, 32, 64))
        self.inputs = Counter("toolkit_predictions", "Inputs answered, per version and role", ["version", "role"])
        self.requests = Counter("toolkit_version_requests", "Requests answered, per version", ["version"])
        self.served = Gauge("toolkit_served_version", "1 for the version in production", ["version"],
                            multiprocess_mode="mostrecent")
        self.drift = Gauge("toolkit_drift", "Live drift test on the last window of served inputs",
                           ["detector", "quantity"], multiprocess_mode="mostrecent")
        self.shadow_agreement = Gauge("toolkit_shadow_agreement", "Share of shadow labels equal to production's",
                                      multiprocess_mode="mostrecent")
        self.canary_active = Gauge("toolkit_canary_active", "1 while a canary answers part of the traffic",
                                   multiprocess_mode="mostrecent")
        self.incidents = Counter("toolkit_incidents", "Automatic rollbacks", ["kind"])
        self.reloads = Counter("toolkit_reloads", "Version swaps after a registry change", ["outcome"])


# ---- the model side --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Served:
    """One loaded version: its runner, normalization and class names."""

    version: str
    runner: Any
    mean: float
    std: float
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    reference: dict[str, np.ndarray] | None

    def probs(self, x: np.ndarray) -> np.ndarray:
        logits = np.asarray(self.runner((x - self.mean) / self.std), dtype=np.float64)
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)


@dataclass(frozen=True)
class _State:
    """What the worker serves; replaced as a whole (one assignment) when the registry changes."""

    production: _Served
    canary: _Served | None = None
    shadow: _Served | None = None
    stamp: tuple = ()


class ClassifierAPI(ls.LitAPI):
    """LitServe API over a registry: production, optional shadow and canary, hot version swaps.

    Args:
        registry: folder of a :class:`~toolkit.monitoring.ModelRegistry` with a promoted version
            registered with ``example_input``.
        run_dir: folder for the state file and the metrics of this server.
        backend: "onnx" (ONNX Runtime, CPU) or "torch" (the ``torch.export`` program in PyTorch).
        max_batch_size: requests merged into one model call, ``>= 1`` (1 turns batching off).
        batch_timeout_s: wait for a batch to fill, ``>= 0`` seconds.
        shadow: a version scored on every request, logged, never answering.
        canary: a version answering ``canary_share`` of the requests (by request id).
        canary_share: in ``[0, 1]``.
        canary_monitor: the live gate (default :class:`~toolkit.deploy.rollout.CanaryMonitor`).
        num_threads: threads of the back end, ``>= 1``.
        reload_interval_s: seconds between two looks at the manifest, ``> 0``.
    """

    def __init__(self, registry: str | Path, run_dir: str | Path, backend: str = "onnx",
                 max_batch_size: int = MAX_BATCH_SIZE, batch_timeout_s: float = BATCH_TIMEOUT_S,
                 shadow: str | None = None, canary: str | None = None, canary_share: float = 0.1,
                 canary_monitor: CanaryMonitor | None = None, num_threads: int = 1,
                 reload_interval_s: float = RELOAD_INTERVAL_S) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s)
        self.registry_root, self.run_dir = Path(registry), Path(run_dir)
        self.backend, self.num_threads = backend, num_threads
        self.shadow_version, self.canary_version, self.canary_share = shadow, canary, float(canary_share)
        self.canary_monitor = canary_monitor or CanaryMonitor()
        self.reload_interval_s = reload_interval_s

    # ---- loading ----------------------------------------------------------------------------------
    def _load(self, registry: Any, version: str) -> _Served:
        from toolkit.deploy.export import OnnxRunner, TorchRunner

        info = registry.serving(version)
        files = info["files"]
        runner = (OnnxRunner(files["onnx"]["path"], self.num_threads) if self.backend == "onnx"
                  else TorchRunner(files["program"]["path"], self.num_threads))
        norm = info.get("normalization") or {"mean": 0.0, "std": 1.0}
        reference = None
        if "reference" in files:
            with np.load(files["reference"]["path"]) as data:
                reference = {"inputs": data["inputs"], "probs": data["probs"]}
        return _Served(version, runner, float(norm["mean"]), float(norm["std"]), tuple(info["class_names"]),
                       tuple(info["input_shape"]), reference)

    def _stamp(self) -> tuple:
        stat = (self.registry_root / "manifest.json").stat()
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def setup(self, device: str) -> None:
        from toolkit.monitoring import ModelRegistry

        self.metrics = _ModelMetrics()
        self.canary_started = utc_now()
        self._lock = threading.Lock()
        stamp = self._stamp()
        registry = ModelRegistry(self.registry_root)
        production = self._load(registry, registry.production)
        canary = self._load(registry, self.canary_version) if self.canary_version else None
        shadow = self._load(registry, self.shadow_version) if self.shadow_version else None
        self._state = _State(production, canary, shadow, stamp)
        self._drift = self._live_drift(production)
        self.metrics.served.labels(production.version).set(1)
        self.metrics.canary_active.set(1 if canary is not None else 0)
        self._write_state()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="registry-watch", daemon=True).start()

    def _write_state(self) -> None:
        from toolkit.monitoring.registry import _atomic_write

        state = self._state
        record = {"status": "ok", "version": state.production.version, "backend": self.backend,
                  "canary": None if state.canary is None else state.canary.version,
                  "canary_share": self.canary_share if state.canary is not None else 0.0,
                  "shadow": None if state.shadow is None else state.shadow.version,
                  "max_batch_size": self.max_batch_size, "pid": os.getpid(), "updated": utc_now()}
        _atomic_write(self.run_dir / STATE_FILE, lambda tmp: tmp.write_text(json.dumps(record)))

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_interval_s):
            try:
                self._maybe_reload()
                self._maybe_test_drift()
            except Exception:  # a broken registry must not stop serving the loaded model
                _LOG.exception("registry watch failed; still serving %s", self._state.production.version)

    def _maybe_reload(self) -> None:
        from toolkit.monitoring import ModelRegistry

        stamp = self._stamp()
        if stamp == self._state.stamp:
            return
        registry = ModelRegistry(self.registry_root)
        with self._lock:
            state = self._state
            wanted = registry.production
            if wanted == state.production.version:
                self._state = _State(state.production, state.canary, state.shadow, stamp)
                return
            try:
                production = self._load(registry, wanted)
                if production.input_shape != state.production.input_shape:
                    raise ValueError(f"{wanted} takes inputs of shape {list(production.input_shape)}, the served "
                                     f"{state.production.version} {list(state.production.input_shape)}: restart the "
                                     "server to change the input shape")
            except Exception as error:
                self.metrics.reloads.labels("refused").inc()
                _LOG.error("not swapping to %s: %s", wanted, error)
                self._state = _State(state.production, state.canary, state.shadow, stamp)
                return
            canary = None if state.canary is not None and state.canary.version == wanted else state.canary
            self._state = _State(production, canary, state.shadow, stamp)  # the swap: one assignment
            self.metrics.served.labels(state.production.version).set(0)
            self.metrics.served.labels(wanted).set(1)
            self.metrics.canary_active.set(1 if canary is not None else 0)
            self.metrics.reloads.labels("swapped").inc()
            self._drift = self._live_drift(production)  # judged against the new version's reference
            self._write_state()

    @staticmethod
    def _live_drift(served: _Served) -> LiveDrift | None:
        if served.reference is None:
            return None
        return LiveDrift(served.reference["inputs"], served.reference["probs"], window=DRIFT_WINDOW,
                         every=DRIFT_EVERY, alpha=DRIFT_ALPHA, n_permutations=DRIFT_PERMUTATIONS)

    def _maybe_test_drift(self) -> None:
        drift = self._drift
        results = None if drift is None else drift.test()
        if results is None:
            return
        for detector, result in results.items():
            self.metrics.drift.labels(detector, "statistic").set(result.statistic)
            self.metrics.drift.labels(detector, "p_value").set(result.p_value)
            self.metrics.drift.labels(detector, "alarm").set(float(result.drift))
            self.metrics.drift.labels(detector, "threshold").set(result.threshold)
            self.metrics.drift.labels(detector, "inputs_seen").set(drift.tested_at)

    # ---- serving ----------------------------------------------------------------------------------
    def decode_request(self, request: PredictRequest) -> dict[str, Any]:
        return {"inputs": request.inputs, "request_id": request.request_id or uuid.uuid4().hex,
                "targets": request.targets}

    def predict(self, x: Any) -> Any:
        requests = x if self.max_batch_size > 1 else [x]
        if self._state.canary is not None and (self.run_dir / CANARY_STOP_FILE).exists():
            self._drop_canary(self._state.canary)  # another worker's gate fired
        state = self._state  # this batch is answered by the versions it started with
        sizes = [len(r["inputs"]) for r in requests]
        self.metrics.batch.observe(len(requests))
        inputs = np.concatenate([r["inputs"] for r in requests])
        prod = state.production.probs(inputs)
        answered = [(state.production, prod)] * len(requests)
        bounds = np.cumsum([0, *sizes])
        if state.canary is not None:
            rows = [i for i, r in enumerate(requests) if in_canary(r["request_id"], self.canary_share)]
            if rows:
                cand_inputs = np.concatenate([inputs[bounds[i]:bounds[i + 1]] for i in rows])
                cand = state.canary.probs(cand_inputs)
                offset = 0
                for i in rows:
                    answered[i] = (state.canary, cand[offset:offset + sizes[i]])
                    offset += sizes[i]
                self._watch_canary(state, requests, rows, bounds, prod, cand)
        if state.shadow is not None:
            self._log_shadow(state, requests, bounds, prod, state.shadow.probs(inputs))
        outputs = []
        for i, request in enumerate(requests):
            served, probs = answered[i]
            if served is state.production:
                probs = prod[bounds[i]:bounds[i + 1]]
            outputs.append({"probs": probs, "served": served, "request_id": request["request_id"]})
            role = "production" if served is state.production else "canary"
            self.metrics.inputs.labels(served.version, role).inc(sizes[i])
            self.metrics.requests.labels(served.version).inc()
        drift = self._drift
        if drift is not None:
            drift.update((inputs - state.production.mean) / state.production.std, prod)
        return outputs if self.max_batch_size > 1 else outputs[0]

    def _log_shadow(self, state: _State, requests: list, bounds: np.ndarray, prod: np.ndarray,
                    shadow: np.ndarray) -> None:
        agree = prod.argmax(1) == shadow.argmax(1)
        self.metrics.shadow_agreement.set(float(agree.mean()))
        path = self.registry_root / SHADOW_LOG
        for i, request in enumerate(requests):
            lo, hi = bounds[i], bounds[i + 1]
            append_jsonl(path, {"time": utc_now(), "request_id": request["request_id"],
                                "production": state.production.version, "shadow": state.shadow.version,
                                "production_labels": prod[lo:hi].argmax(1).tolist(),
                                "shadow_labels": shadow[lo:hi].argmax(1).tolist(),
                                "shadow_confidence": shadow[lo:hi].max(1).round(6).tolist(),
                                "agreement": float(agree[lo:hi].mean())})

    def _watch_canary(self, state: _State, requests: list, rows: list[int], bounds: np.ndarray,
                      prod: np.ndarray, cand: np.ndarray) -> None:
        prod_rows = np.concatenate([prod[bounds[i]:bounds[i + 1]] for i in rows])
        targets = None
        if all(requests[i]["targets"] is not None for i in rows):
            targets = [t for i in rows for t in requests[i]["targets"]]
        verdict = self.canary_monitor.update(cand, prod_rows, targets)
        if verdict is None or verdict.passed:
            return
        try:  # exclusive create: of all workers, only the first to fire writes the incident
            fd = os.open(self.run_dir / CANARY_STOP_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            self._drop_canary(state.canary)
            return
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"time": utc_now(), "version": state.canary.version, "pid": os.getpid()}))
        self.metrics.incidents.labels("canary_rollback").inc()
        table = verdict.table.reset_index().to_dict(orient="records")
        append_jsonl(self.registry_root / INCIDENT_LOG, {  # written before /health shows the canary gone
            "time": utc_now(), "kind": "canary_rollback", "version": state.canary.version,
            "restored": state.production.version, "fired": verdict.failures, "window": self.canary_monitor.window,
            "canary_started": self.canary_started,
            "gate": table})
        _LOG.warning("canary %s rolled back to %s: %s", state.canary.version, state.production.version,
                     verdict.verdict)
        self._drop_canary(state.canary)

    def _drop_canary(self, canary: _Served | None) -> bool:
        """Stop answering with ``canary`` in this worker; False when it was no longer active."""
        with self._lock:
            if canary is None or self._state.canary is not canary:
                return False
            self._state = _State(self._state.production, None, self._state.shadow, self._state.stamp)
        self.metrics.canary_active.set(0)
        self._write_state()
        return True

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        probs, served = output["probs"], output["served"]
        top = probs.argmax(1)
        return {"probs": probs.round(7).tolist(), "labels": [served.class_names[k] for k in top],
                "confidence": probs.max(1).round(7).tolist(), "model_version": served.version,
                "request_id": output["request_id"]}


# ---- the server ------------------------------------------------------------------------------------
def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def build_server(registry: str | Path, backend: str = "onnx", max_batch_size: int = MAX_BATCH_SIZE,
                 batch_timeout_s: float = BATCH_TIMEOUT_S, max_inputs: int = MAX_INPUTS,
                 shadow: str | None = None, canary: str | None = None, canary_share: float = 0.1,
                 canary_monitor: CanaryMonitor | None = None, num_threads: int = 1,
                 reload_interval_s: float = RELOAD_INTERVAL_S, run_dir: str | Path | None = None,
                 workers: int = WORKERS) -> ls.LitServer:
    """A ``LitServer`` for ``registry``'s production version (arguments as :class:`ClassifierAPI`;
    ``max_inputs``: inputs per request, ``>= 1``; ``workers``: LitServe worker processes, ``>= 1``, each
    with its own copy of the models and its own canary gate, see the module docstring). Checks
    everything it can before starting."""
    from toolkit.monitoring import ModelRegistry

    _check_choice("backend", backend, BACKENDS)
    for name, value, low in (("max_batch_size", max_batch_size, 1), ("max_inputs", max_inputs, 1),
                             ("num_threads", num_threads, 1), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("batch_timeout_s", batch_timeout_s), ("reload_interval_s", reload_interval_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    if isinstance(canary_share, bool) or not isinstance(canary_share, (int, float)) or not 0 <= canary_share <= 1:
        raise ValueError(f"canary_share must be a fraction in [0, 1], got {canary_share!r}")
    reg = ModelRegistry(registry)
    info = reg.serving()  # raises with a clear message when nothing servable is in production
    for name, version in (("shadow", shadow), ("canary", canary)):
        if version is not None:
            _check_choice(name, version, reg.versions)
            if version == reg.production:
                raise ValueError(f"{name} {version!r} is the production version; choose a candidate")
            if reg.serving(version)["input_shape"] != info["input_shape"]:
                raise ValueError(f"{name} {version!r} takes inputs of another shape than production")
    run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="toolkit-serve-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    (run_dir / CANARY_STOP_FILE).unlink(missing_ok=True)
    _use_multiprocess_metrics(metrics_dir)
    PredictRequest.limits = {"shape": info["input_shape"], "max_inputs": max_inputs,
                             "num_classes": info["num_classes"]}
    api = ClassifierAPI(registry, run_dir, backend=backend, max_batch_size=max_batch_size,
                        batch_timeout_s=batch_timeout_s, shadow=shadow, canary=canary, canary_share=canary_share,
                        canary_monitor=canary_monitor, num_threads=num_threads, reload_interval_s=reload_interval_s)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=workers, healthcheck_path="/litserve/health", info_path="/litserve/info",
                          max_payload_size=MAX_PAYLOAD_BYTES, disable_openapi_url=True,
                          middlewares=[_HttpMetrics])
    server.app.add_exception_handler(RequestValidationError, _validation_error)

    async def health() -> JSONResponse:
        from litserve.utils import WorkerSetupStatus

        path = run_dir / STATE_FILE
        if not path.exists():
            return JSONResponse(status_code=503, content={"status": "starting", "version": None})
        state = json.loads(path.read_text())
        workers = dict(getattr(server, "workers_setup_status", None) or {})
        if any(status != WorkerSetupStatus.READY for status in workers.values()):
            state["status"] = "worker not ready: " + ", ".join(f"{k} {v}" for k, v in workers.items())
            return JSONResponse(status_code=503, content=state)
        return JSONResponse(content=state)

    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        collector = CollectorRegistry()
        multiprocess.MultiProcessCollector(collector, path=str(metrics_dir))
        return Response(content=generate_latest(collector), media_type=CONTENT_TYPE_LATEST)

    server.app.add_api_route("/health", health, methods=["GET"])
    server.app.add_api_route("/metrics", metrics, methods=["GET"])
    return server


def serve(registry: str | Path, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning",
          **kwargs: Any) -> None:
    """Build the server (see :func:`build_server`) and run it until SIGINT or SIGTERM."""
    import signal

    if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
        raise ValueError(f"port must be an integer in [1024, 65535], got {port!r}")
    _check_choice("host", host, ("127.0.0.1", "0.0.0.0", "::"))
    server = build_server(registry, **kwargs)

    main_pid = os.getpid()

    def _interrupt(signum: int, frame: Any) -> None:
        # LitServe shuts its workers down gracefully on KeyboardInterrupt; the HTTP process forked from
        # here inherits this handler and has stopped already when uvicorn re-raises the signal to it
        if os.getpid() == main_pid:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    server.run(host=host, port=port, log_level=log_level, generate_client_file=False, num_api_servers=1)
