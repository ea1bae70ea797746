"""Start-up: the proxy's command line, its checks before listening, and SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from .common import VERSION, log
from .config import ConfigError, load_settings, master_key_refusal
from .db import DatabaseDown
from .http import Server
from .proxy import Proxy

# Exit status of the real proxy when it refuses to start: uvicorn's lifespan failure.
REFUSAL_EXIT = 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="litellm", description="litellm-sim: a stand-in for the LiteLLM proxy")
    parser.add_argument("--config", help="the proxy's config.yaml")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument(
        "--num_workers",
        type=int,
        default=1,
        help="routers, each with cooldowns and health of its own",
    )
    parser.add_argument("--detailed_debug", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.detailed_debug else logging.INFO,
        format="%(asctime)s %(levelname)s litellm-sim: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    refusal = master_key_refusal(settings)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return REFUSAL_EXIT
    if not os.environ.get("LITELLM_SALT_KEY"):
        log.warning("LITELLM_SALT_KEY is not set: stored credentials are encrypted with the master key")
    proxy = Proxy(settings, args.num_workers)
    if proxy.db is not None:
        try:
            proxy.db.ping()
        except DatabaseDown as exc:
            log.warning("database not reachable yet, readiness answers 503 until it is: %s", exc)
    try:
        server = Server((args.host, args.port), proxy)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: finishing requests in flight", signal.Signals(signum).name)
        proxy.shutting_down = True
        threading.Thread(target=server.drain).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proxy.router.start_health_checks(proxy.probe)
    log.info("litellm %s proxying %s on http://%s:%s", VERSION, ", ".join(settings.groups), args.host, args.port)
    # Polled for shutdown 10 times a second: SIGTERM with nothing in flight ends the server at once.
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0
