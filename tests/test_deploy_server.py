"""The LitServe endpoint, started for real on a free local port and spoken to over HTTP (no mocks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from _server import ROOT, running_server
from toolkit.deploy.rollout import in_canary
from toolkit.monitoring import ModelRegistry

pytestmark = pytest.mark.slow

INPUT_SHAPE = (1, 8)
CLASSES = ["cat", "dog", "owl"]
TEMPERATURE = 1.5
NORMALIZATION = {"mean": 0.5, "std": 2.0}
PROB_ATOL = 1e-5
CANARY_SHARE = 0.5
WORKERS = 2


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


@pytest.fixture(scope="module")
def models():
    """v1 (calibrated), v2 (another seed), v3 (v1 with its logits negated: disagrees almost always)."""
    v1, v2 = _net(0), _net(1)
    v3 = _net(0)
    with torch.no_grad():
        v3[-1].weight.neg_()
        v3[-1].bias.neg_()
    return {"v1": (v1, TEMPERATURE), "v2": (v2, 1.0), "v3": (v3, 1.0)}


@pytest.fixture(scope="module")
def base_registry(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("registry")
    registry = ModelRegistry(root)
    g = torch.Generator().manual_seed(0)
    reference = (torch.rand(300, *INPUT_SHAPE, generator=g) - NORMALIZATION["mean"]) / NORMALIZATION["std"]
    for name, (model, temperature) in models.items():
        version = registry.register(model, metrics={"accuracy": 0.9}, example_input=reference[:4],
                                    class_names=CLASSES, normalization=NORMALIZATION, reference_inputs=reference,
                                    temperature=None if temperature == 1.0 else temperature)
        assert version == name
    registry.promote("v1")
    return root


@pytest.fixture
def registry(base_registry, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(base_registry, root)
    return root


@pytest.fixture(scope="module")
def served(base_registry, tmp_path_factory):
    """One server (ONNX Runtime, batching on) for the contract and the promotion tests, in file order."""
    root = tmp_path_factory.mktemp("served") / "registry"
    shutil.copytree(base_registry, root)
    with running_server(root, "--max-inputs", "8", log_dir=root.parent) as server:
        yield server, root


@pytest.fixture(scope="module")
def rollouts(base_registry, tmp_path_factory):
    """One server with a shadow (v2) and a canary (v3, half the traffic), PyTorch back end, no batching,
    two LitServe workers (each with its own canary gate)."""
    root = tmp_path_factory.mktemp("rollouts") / "registry"
    shutil.copytree(base_registry, root)
    with running_server(root, "--shadow", "v2", "--canary", "v3", "--canary-share", str(CANARY_SHARE),
                        "--max-inputs", "20", "--backend", "torch", "--no-batching", "--workers", str(WORKERS),
                        log_dir=root.parent) as server:
        yield server, root


def _expected_probs(models, version: str, raw: np.ndarray) -> np.ndarray:
    """The oracle: eager model on normalized inputs, divided by T, softmax, in float64."""
    model, temperature = models[version]
    x = (torch.as_tensor(raw, dtype=torch.float32) - NORMALIZATION["mean"]) / NORMALIZATION["std"]
    with torch.no_grad():
        return (model(x).double() / temperature).softmax(1).numpy()


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *INPUT_SHAPE)).astype(np.float32)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit", "registry", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _metric(text: str, name: str) -> dict[str, float]:
    """{labels: value} of the samples of one metric in Prometheus text."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


BAD_REQUESTS = [
    ("missing key", {"input": [[0.0] * 8]}, "inputs"),
    ("wrong shape", {"inputs": [[[0.0] * 7]]}, "shape [1, 8]"),
    ("not a list", {"inputs": 3}, "list"),
    ("empty batch", {"inputs": []}, "empty"),
    ("ragged", {"inputs": [[[0.0] * 8], [[0.0] * 3]]}, "ragged"),
    ("non-numbers", {"inputs": [[["a"] * 8]]}, "numbers"),
    ("booleans", {"inputs": [[[True] * 8]]}, "numbers"),
    ("over the limit", {"inputs": [[[0.0] * 8]] * 9}, "limit of 8"),
    ("targets length", {"inputs": [[[0.0] * 8]], "targets": [0, 1]}, "targets"),
    ("target out of range", {"inputs": [[[0.0] * 8]], "targets": [3]}, "class indices in [0, 2]"),
    ("target not an integer", {"inputs": [[[0.0] * 8]], "targets": [0.5]}, "targets"),
    ("not an object", [1, 2], "JSON object"),
]


def test_predict_contract_errors_health_and_metrics(served, models):
    server, _ = served
    status, health = server.get("/health")
    assert status == 200 and health["status"] == "ok" and health["version"] == "v1"

    raw = _inputs(5)
    status, body = server.predict({"inputs": raw.tolist(), "request_id": "r-1"})
    assert status == 200, body
    assert set(body) >= {"probs", "labels", "confidence", "model_version"} and body["model_version"] == "v1"
    expected = _expected_probs(models, "v1", raw)
    np.testing.assert_allclose(body["probs"], expected, atol=PROB_ATOL)
    assert body["labels"] == [CLASSES[k] for k in expected.argmax(1)]
    np.testing.assert_allclose(body["confidence"], expected.max(1), atol=PROB_ATOL)

    for what, bad, named in BAD_REQUESTS:
        status, answer = server.predict(bad)
        assert 400 <= status < 500, (what, status, answer)
        assert named in answer["detail"], (what, answer)
    for what, raw_body, named in [("malformed JSON", b'{"inputs": [[[0.0, 1', "malformed JSON"),
                                  ("NaN", b'{"inputs": [[[NaN, 0, 0, 0, 0, 0, 0, 0]]]}', "NaN"),
                                  ("Infinity", b'{"inputs": [[[Infinity, 0, 0, 0, 0, 0, 0, 0]]]}', "infinite"),
                                  ("no body", b"", "required")]:
        status, answer = server.predict(None, raw=raw_body)
        assert 400 <= status < 500, (what, status, answer)
        assert named in answer["detail"], (what, answer)
    status, body = server.predict({"inputs": raw.tolist()})  # still serving
    assert status == 200 and body["model_version"] == "v1"

    # enough traffic to fill the drift window (200 inputs), then the gauges appear
    for seed in range(30):
        assert server.predict({"inputs": _inputs(8, seed).tolist()})[0] == 200
    metrics = server.wait_until(lambda: (lambda t: t if "toolkit_drift" in t else None)(server.get("/metrics")[1]),
                                what="drift gauges on /metrics")
    assert _metric(metrics, "toolkit_http_errors_total")  # the refused requests are counted
    assert not any('status="500"' in k for k in _metric(metrics, "toolkit_http_requests_total"))
    assert _metric(metrics, "toolkit_http_request_duration_seconds_count")['{path="/predict"}'] >= 30
    assert _metric(metrics, "toolkit_predictions_total")['{role="production",version="v1"}'] == 5 + 5 + 240
    assert _metric(metrics, "toolkit_version_requests_total")['{version="v1"}'] == 32
    p_values = _metric(metrics, "toolkit_drift")
    assert 0 <= p_values['{detector="input_ks",quantity="p_value"}'] <= 1


def test_concurrent_bad_requests_do_not_fail_the_good_ones_batched_with_them(served, models):
    server, _ = served
    raw = _inputs(2)
    bodies = [{"inputs": raw.tolist(), "targets": [0, 2]}, {"inputs": [[[float("nan")] * 8]]},
              {"inputs": [[[0.0] * 7]]}] * 20
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(server.predict, bodies))
    for body, (status, answer) in zip(bodies, answers):
        if body["inputs"] is bodies[0]["inputs"]:
            assert status == 200, answer
            np.testing.assert_allclose(answer["probs"], _expected_probs(models, "v1", raw), atol=PROB_ATOL)
        else:
            assert status == 422, answer


def test_promote_and_rollback_reach_the_running_server_atomically(served, models):
    server, registry = served
    raw = _inputs(4)
    expected = {v: _expected_probs(models, v, raw) for v in ("v1", "v2")}
    answers, stop = [], time.monotonic() + 600

    def client() -> None:  # traffic flows during the swaps
        while time.monotonic() < stop:
            answers.append(server.predict({"inputs": raw.tolist()}))

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(client) for _ in range(2)]
        server.wait_until(lambda: len(answers) > 5, what="traffic")
        promoted = _cli("promote", "--registry", str(registry), "v2")
        assert promoted.returncode == 0, promoted.stderr
        start = time.monotonic()
        server.wait_until(lambda: server.get("/health")[1]["version"] == "v2", timeout_s=5, what="promotion")
        swap_s = time.monotonic() - start
        server.wait_until(lambda: answers[-1][1]["model_version"] == "v2", timeout_s=5, what="v2 answering")
        rolled = _cli("rollback", "--registry", str(registry))
        assert rolled.returncode == 0 and "v1" in rolled.stdout, rolled.stderr
        server.wait_until(lambda: answers[-1][1]["model_version"] == "v1", timeout_s=5, what="rollback")
        stop = 0
        for f in futures:
            f.result()
    assert swap_s < 5
    versions = [body["model_version"] for status, body in answers]
    assert all(status == 200 for status, _ in answers)
    assert {"v1", "v2"} <= set(versions)
    for status, body in answers:  # every answer is wholly one version's: no half-loaded model
        np.testing.assert_allclose(body["probs"], expected[body["model_version"]], atol=PROB_ATOL)


def test_a_refused_promotion_cli_says_why(registry):
    result = _cli("promote", "--registry", str(registry), "v9")
    assert result.returncode == 2 and "v9" in result.stderr


def test_shadow_scores_every_request_logs_agreement_and_never_answers(rollouts, models):
    server, registry = rollouts
    ids = [rid for rid in (f"s-{k}" for k in range(100)) if not in_canary(rid, CANARY_SHARE)][:4]
    sent = []
    for seed, rid in enumerate(ids):
        raw = _inputs(6, seed)
        status, body = server.predict({"inputs": raw.tolist(), "request_id": rid})
        assert status == 200 and body["model_version"] == "v1"
        np.testing.assert_allclose(body["probs"], _expected_probs(models, "v1", raw), atol=PROB_ATOL)
        sent.append(raw)
    lines = [json.loads(line) for line in (registry / "shadow.jsonl").read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ids
    for line, raw in zip(lines, sent):
        prod = _expected_probs(models, "v1", raw).argmax(1)
        shadow = _expected_probs(models, "v2", raw).argmax(1)
        assert line["production"] == "v1" and line["shadow"] == "v2"
        assert line["shadow_labels"] == shadow.tolist()
        assert line["agreement"] == pytest.approx(float((prod == shadow).mean()))


def _post_with_header(url: str, body: dict, request_id: str | None) -> tuple[int, dict, str | None]:
    """(status, JSON, the response's X-Request-ID) of a POST sending ``request_id`` as X-Request-ID."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **({"X-Request-ID": request_id} if request_id else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers.get("X-Request-ID")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers.get("X-Request-ID")


def test_the_x_request_id_header_routes_the_canary_and_is_echoed(rollouts):
    server, _ = rollouts
    raw = _inputs(1).tolist()
    ids = [f"hdr-{k}" for k in range(40)]
    routed = {True: [r for r in ids if in_canary(r, CANARY_SHARE)][:3], False: [r for r in ids
                                                                               if not in_canary(r, CANARY_SHARE)][:3]}
    for canary, chosen in routed.items():
        for rid in chosen:
            status, body, echoed = _post_with_header(server.url + "/predict", {"inputs": raw}, rid)
            assert status == 200 and body["request_id"] == rid and echoed == rid
            assert body["model_version"] == ("v3" if canary else "v1")
    status, body, echoed = _post_with_header(server.url + "/predict", {"inputs": raw, "request_id": "a"}, "b")
    assert status == 422 and "X-Request-ID" in body["detail"] and echoed == "b"
    status, body, echoed = _post_with_header(server.url + "/predict", {"inputs": raw}, None)
    assert status == 200 and echoed and body["request_id"] == echoed  # the server made one and says which


def test_canary_share_is_deterministic_and_a_breach_rolls_back_with_an_incident(rollouts, models):
    server, registry = rollouts
    share = CANARY_SHARE
    assert server.get("/health")[1]["canary"] == "v3"
    raw = _inputs(20)
    first = {}
    for i in range(6):  # under the gate's window (200): no verdict yet
        rid = f"req-{i}"
        status, body = server.predict({"inputs": raw.tolist(), "request_id": rid})
        assert status == 200
        assert body["model_version"] == ("v3" if in_canary(rid, share) else "v1")
        np.testing.assert_allclose(body["probs"], _expected_probs(models, body["model_version"], raw),
                                   atol=PROB_ATOL)
        first[rid] = body["model_version"]
    assert server.predict({"inputs": raw.tolist(), "request_id": "req-0"})[1]["model_version"] == first["req-0"]
    start = time.monotonic()
    i = 100
    while server.get("/health")[1]["canary"] is not None:  # v3 disagrees with v1: the gate must fire
        assert server.predict({"inputs": raw.tolist(), "request_id": f"req-{i}"})[0] == 200
        i += 1
        assert time.monotonic() - start < 60, "the canary was never rolled back"
    # every worker stops the canary, not only the one whose gate fired: concurrent canary-routed
    # requests reach both workers, and production answers all of them
    canary_ids = [f"req-{k}" for k in range(1000, 3000) if in_canary(f"req-{k}", share)][:40]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda rid: server.predict({"inputs": raw.tolist(), "request_id": rid}), canary_ids))
    assert [body["model_version"] for _, body in answers] == ["v1"] * len(canary_ids)
    metrics = server.get("/metrics")[1]
    incidents = [json.loads(line) for line in (registry / "incidents.jsonl").read_text().splitlines()]
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["kind"] == "canary_rollback" and incident["version"] == "v3" and incident["restored"] == "v1"
    assert incident["fired"] == ["agreement"] and incident["time"]
    assert _metric(metrics, "toolkit_incidents_total")['{kind="canary_rollback"}'] == 1
    assert _metric(metrics, "toolkit_canary_active")[""] == 0


def test_serve_refuses_a_registry_with_nothing_servable(tmp_path):
    registry = ModelRegistry(tmp_path / "empty")
    registry.promote(registry.register(_net(0)))  # registered without example_input
    result = subprocess.run([sys.executable, "-m", "toolkit", "serve", "--registry", str(tmp_path / "empty"),
                             "--port", "18999"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and "example_input" in result.stderr


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "tensorrt"}, "backend"),
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_inputs": 2.5}, "max_inputs"),
    ({"workers": 0}, "workers"),
    ({"batch_timeout_s": -1}, "batch_timeout_s"),
    ({"canary_share": 1.5}, "canary_share"),
    ({"canary": "v9"}, "canary"),
    ({"canary": "v1"}, "production version"),
    ({"shadow": "v1"}, "production version"),
])
def test_build_server_refuses_bad_arguments_before_starting(base_registry, kwargs, match):
    from toolkit.deploy.server import build_server

    with pytest.raises(ValueError, match=match):
        build_server(base_registry, **kwargs)
