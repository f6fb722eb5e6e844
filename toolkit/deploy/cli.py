"""``python -m toolkit serve`` and ``python -m toolkit registry promote|rollback|show``.

Example (a shell)::

    python -m toolkit serve --registry runs/registry --host 127.0.0.1 --port 8000 --canary v3 --canary-share 0.1
    python -m toolkit registry promote --registry runs/registry v3
    python -m toolkit registry rollback --registry runs/registry        # to the previous production
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["COMMANDS", "main"]

COMMANDS = ("serve", "registry")


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    from toolkit.deploy.server import BACKENDS, BATCH_TIMEOUT_S, MAX_BATCH_SIZE, MAX_INPUTS, RELOAD_INTERVAL_S, WORKERS

    p = sub.add_parser("serve", help="serve the registry's production version over HTTP (LitServe)")
    p.add_argument("--registry", required=True, help="folder of the ModelRegistry")
    p.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "0.0.0.0", "::"])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", default="onnx", choices=BACKENDS, help="onnx (ONNX Runtime, CPU) or torch")
    p.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE,
                   help="requests merged into one model call (dynamic batching)")
    p.add_argument("--batch-timeout", type=float, default=BATCH_TIMEOUT_S, help="seconds to wait to fill a batch")
    p.add_argument("--no-batching", action="store_true", help="one request per model call")
    p.add_argument("--max-inputs", type=int, default=MAX_INPUTS, help="inputs allowed in one request")
    p.add_argument("--shadow", default=None, metavar="VERSION", help="score this version on every request, log it")
    p.add_argument("--canary", default=None, metavar="VERSION", help="answer --canary-share of requests with it")
    p.add_argument("--canary-share", type=float, default=0.1)
    p.add_argument("--num-threads", type=int, default=1, help="threads of the back end")
    p.add_argument("--workers", type=int, default=WORKERS,
                   help="LitServe worker processes (each gates its own canary traffic; a rollback stops all)")
    p.add_argument("--reload-interval", type=float, default=RELOAD_INTERVAL_S,
                   help="seconds between two looks at the registry")
    p.add_argument("--run-dir", default=None, help="folder for the server's state and metrics (default: a temp dir)")
    p.add_argument("--log-level", default="warning")


def _registry_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="promote, roll back or list the versions of a ModelRegistry")
    actions = p.add_subparsers(dest="action", required=True)
    promote = actions.add_parser("promote", help="put VERSION in production")
    promote.add_argument("--registry", required=True)
    promote.add_argument("version", metavar="VERSION")
    rollback = actions.add_parser("rollback", help="return production to the previous version (or to VERSION)")
    rollback.add_argument("--registry", required=True)
    rollback.add_argument("version", metavar="VERSION", nargs="?", default=None)
    show = actions.add_parser("show", help="list the versions")
    show.add_argument("--registry", required=True)


def main(argv: list[str] | None = None) -> int:
    """Run ``serve`` or ``registry``; return the exit status (2 and a one-line message on a bad argument)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    if argv[:1] != ["registry"]:  # the server (LitServe, ONNX Runtime) is imported only to serve
        _serve_parser(sub)
    _registry_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from toolkit.deploy.server import serve

            serve(args.registry, host=args.host, port=args.port, log_level=args.log_level, backend=args.backend,
                  max_batch_size=1 if args.no_batching else args.max_batch_size, batch_timeout_s=args.batch_timeout,
                  max_inputs=args.max_inputs, shadow=args.shadow, canary=args.canary,
                  canary_share=args.canary_share, num_threads=args.num_threads,
                  reload_interval_s=args.reload_interval, run_dir=args.run_dir, workers=args.workers)
            return 0
        from toolkit.monitoring import ModelRegistry

        registry = ModelRegistry(args.registry)
        if args.action == "promote":
            registry.promote(args.version)
            sys.stdout.write(f"production: {registry.production}\n")
        elif args.action == "rollback":
            sys.stdout.write(f"production: {registry.rollback(args.version)}\n")
        else:
            sys.stdout.write(registry.table().to_string() + f"\nproduction: {registry.production}\n")
        return 0
    except (ValueError, TypeError) as error:
        parser.exit(2, f"error: {error}\n")
    return 0
