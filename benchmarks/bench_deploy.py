"""Throughput and latency of ``python -m toolkit serve``: batching on vs off, ONNX Runtime vs PyTorch.

    python benchmarks/bench_deploy.py [--clients 8] [--duration 8] [--inputs 1]

A SmallCNN on the 8x8 digits (untrained: speed does not depend on the weights) is registered with
its ONNX and ``torch.export`` artifacts, then served four ways at once (ONNX Runtime or PyTorch,
LitServe's dynamic batching on or off), each a real server in a subprocess on a free local port,
loaded one after another in ``--rounds`` rounds whose order rotates. ``--clients`` threads send
``POST /predict`` requests of ``--inputs`` digits each, on one keep-alive connection per thread,
``--duration`` seconds per arm in all, each burst after a warm-up. Reported per arm: requests/s,
p50/p99 latency and the mean requests per model call (from ``/metrics``); then the ratios batching
on / off (per back end) and ONNX / PyTorch (per batching setting), measured in the same run so the
machine's load hits every arm alike.

The clients run on the same machine as the server and compete with it for the cores; on a shared
machine the absolute numbers are noise and even the ratios move by tens of percent between runs:
re-run on a quiet machine before quoting them. The back ends are also timed alone, in this process
and without HTTP (median per call, interleaved), which shows how much of a request is the model.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from toolkit.data import DigitsDataModule
from toolkit.models import SmallCNN
from toolkit.monitoring import ModelRegistry

ROOT = Path(__file__).parents[1]
WARMUP_S = 2.0
START_TIMEOUT_S = 180.0
ARMS = (("onnx", True), ("onnx", False), ("torch", True), ("torch", False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(registry: Path, backend: str, batching: bool, run_dir: Path):
    port = _free_port()
    args = [sys.executable, "-m", "toolkit", "serve", "--registry", str(registry), "--port", str(port),
            "--backend", backend, "--run-dir", str(run_dir / f"{backend}-{batching}")]
    if not batching:
        args.append("--no-batching")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    log = (run_dir / f"server-{port}.log").open("w")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log.name}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            time.sleep(0.2)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _load(port: int, body: bytes, clients: int, duration_s: float) -> tuple[float, np.ndarray]:
    """Requests/s and the latencies (s) of ``clients`` threads sending ``body`` for ``duration_s``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[int] = []
    start_at, stop_at = time.monotonic() + WARMUP_S, time.monotonic() + WARMUP_S + duration_s

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}
        while (now := time.monotonic()) < stop_at:
            t0 = time.perf_counter()
            conn.request("POST", "/predict", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
            if now >= start_at:
                latencies[k].append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {sorted(set(errors))}")
    all_latencies = np.concatenate([np.array(x) for x in latencies])
    return len(all_latencies) / duration_s, all_latencies


def _mean_batch(port: int) -> float:
    """Mean requests per model call, from the server's ``toolkit_batch_requests`` histogram."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    values = {}
    for line in conn.getresponse().read().decode().splitlines():
        for name in ("toolkit_batch_requests_sum", "toolkit_batch_requests_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[-1])
    return values["toolkit_batch_requests_sum"] / values["toolkit_batch_requests_count"]


def _runner_times(path_onnx: str, path_program: str, x: torch.Tensor, repeats: int = 200) -> pd.DataFrame:
    """Median milliseconds per call of each back end alone (no HTTP), batch 1 and 16, interleaved."""
    from toolkit.deploy import OnnxRunner, TorchRunner

    torch.set_num_threads(1)
    runners = {"onnx": OnnxRunner(path_onnx), "torch": TorchRunner(path_program)}
    rows = []
    for batch in (1, 16):
        inputs = x[:batch].numpy()
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(repeats):
            for name, runner in runners.items():
                t0 = time.perf_counter()
                runner(inputs)
                times[name].append(time.perf_counter() - t0)
        rows += [{"backend": name, "batch": batch, "median_ms": 1e3 * float(np.median(t))} for name, t in times.items()]
    return pd.DataFrame(rows).pivot(index="batch", columns="backend", values="median_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per arm")
    parser.add_argument("--inputs", type=int, default=1, help="digits per request")
    parser.add_argument("--rounds", type=int, default=3, help="the duration is split in rounds, arms rotated")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = DigitsDataModule(image_size=8)
    data.setup()
    x = data.tensors("test")[0]
    model = SmallCNN(in_channels=1, num_classes=data.num_classes).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        registry = ModelRegistry(tmp / "registry")
        registry.promote(registry.register(model, example_input=x[:8], class_names=list(data.class_names)))
        body = json.dumps({"inputs": x[: args.inputs].tolist()}).encode()
        info = registry.serving()
        alone = _runner_times(info["files"]["onnx"]["path"], info["files"]["program"]["path"], x)
        rows = []
        with contextlib.ExitStack() as stack:  # all four servers up at once; rounds in rotated order
            ports = {arm: stack.enter_context(_server(tmp / "registry", *arm, tmp)) for arm in ARMS}
            results: dict = {arm: [] for arm in ARMS}
            for r in range(args.rounds):
                for arm in ARMS[r % len(ARMS):] + ARMS[: r % len(ARMS)]:
                    results[arm].append(_load(ports[arm], body, args.clients, args.duration / args.rounds))
            batch = {arm: _mean_batch(port) for arm, port in ports.items()}
        for (backend, batching), runs in results.items():
            lat = np.concatenate([latencies for _, latencies in runs])
            rows.append({"backend": backend, "batching": batching, "requests_per_s": len(lat) / args.duration,
                         "p50_ms": 1e3 * np.quantile(lat, 0.5), "p99_ms": 1e3 * np.quantile(lat, 0.99),
                         "requests": len(lat), "requests_per_model_call": batch[backend, batching]})
    table = pd.DataFrame(rows).set_index(["backend", "batching"])
    print(f"{args.clients} concurrent clients, {args.inputs} input(s) per request, {args.duration:g} s per arm "
          f"(noisy on a shared machine)")
    print(table.round(2).to_string())
    print("\nthe back ends alone, in this process (median ms per call, no HTTP):")
    print(alone.round(3).to_string())
    print(f"ONNX Runtime / PyTorch time per call: batch 1 x{alone.loc[1, 'onnx'] / alone.loc[1, 'torch']:.2f}, "
          f"batch 16 x{alone.loc[16, 'onnx'] / alone.loc[16, 'torch']:.2f}\n")
    rps = table["requests_per_s"]
    p99 = table["p99_ms"]
    for backend in ("onnx", "torch"):
        print(f"batching on / off, {backend}: throughput x{rps[backend, True] / rps[backend, False]:.2f}, "
              f"p99 x{p99[backend, True] / p99[backend, False]:.2f}")
    for batching in (True, False):
        print(f"ONNX Runtime / PyTorch, batching {'on' if batching else 'off'}: throughput "
              f"x{rps['onnx', batching] / rps['torch', batching]:.2f}, p99 x{p99['onnx', batching] / p99['torch', batching]:.2f}")


if __name__ == "__main__":
    main()
