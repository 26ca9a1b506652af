"""``python -m sluicegate.testing.emulator``: serve the loopback OpenAI-compatible emulator.

The server itself is :class:`sluicegate.testing.Emulator`; this module is its command line.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from ..errors import ConfigurationError
from ..providers.latency import LogNormalLatency
from ._emulator import EmulatorConfig, serve_emulator

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sluicegate.emulator",
        description="Serve a local OpenAI-compatible emulator with hidden rate limits.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port, 0 for any (default 8000)")
    parser.add_argument("--capacity", type=int, default=None, help="hidden max concurrent calls")
    parser.add_argument("--rpm", type=int, default=None, help="hidden requests per minute")
    parser.add_argument("--tpm", type=int, default=None, help="hidden tokens per minute")
    parser.add_argument("--latency", type=float, default=0.05, help="mean latency, seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="latency jitter fraction [0, 1)")
    parser.add_argument(
        "--latency-sigma",
        type=float,
        default=None,
        help="log-normal latency: --latency is the median, this the spread (e.g. 0.5)",
    )
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After on a 429 (s)")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="probability of a 5xx")
    parser.add_argument("--seed", type=int, default=0, help="seed for latency and failures")
    parser.add_argument(
        "--model", action="append", default=None, help="accepted model id (repeat; default any)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; serves until interrupted (Ctrl-C). Returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        latency: dict[str, Any] = {"latency_seconds": args.latency, "latency_jitter": args.jitter}
        if args.latency_sigma is not None:
            if args.jitter:
                raise ConfigurationError(
                    "--latency-sigma", "given with --jitter", "use one of the two"
                )
            latency = {"latency": LogNormalLatency(median=args.latency, sigma=args.latency_sigma)}
        config = EmulatorConfig(
            host=args.host,
            port=args.port,
            capacity=args.capacity,
            requests_per_minute=args.rpm,
            tokens_per_minute=args.tpm,
            **latency,
            retry_after_seconds=args.retry_after,
            failure_rate=args.failure_rate,
            seed=args.seed,
            models=tuple(args.model or ()),
        )
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        # Stop on SIGINT/SIGTERM by leaving the block, so shutdown is the ordinary clean exit.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with serve_emulator(config) as emulator:
                print(f"sluicegate emulator listening on {emulator.base_url}", flush=True)
                async for signum in signals:
                    print(f"stopping on {signal.Signals(signum).name}", file=sys.stderr)
                    break

    try:
        trio.run(serve)
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
