"""`python -m resilience.platform --host HOST --port PORT`: one replica on uvicorn.

One worker, no access log (it costs CPU under load; errors are still logged),
uvloop and httptools when installed. SIGTERM stops accepting connections,
lets requests in flight finish (bounded), then closes the pools.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys

import uvicorn

from resilience.errors import UserError

from .app import create_app
from .settings import settings_from_env

GRACEFUL_SHUTDOWN_S = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m resilience.platform",
                                     description="Run one replica of the school-meal ordering API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--log-level", default="warning",
                        choices=["critical", "error", "warning", "info", "debug"], help="default warning")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from_env()
    except UserError as exc:
        print(f"resilience.platform: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s {settings.replica} %(levelname)s %(name)s: %(message)s")
    # asyncpg logs a traceback each time it fails to refill the pool while PostgreSQL is down;
    # the readiness loop already reports that outage in one line.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        workers=1,
        log_level=args.log_level,
        access_log=False,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
