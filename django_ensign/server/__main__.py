"""Command line: ``serve`` the embedded server, or ``create-apikey`` for it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from django_ensign.server.app import create_key, run
from django_ensign.server.tokens import ALL_PERMISSIONS


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m django_ensign.server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC server and the HTTP auth service")
    serve.add_argument("--data-dir", required=True, help="where the database and keys live")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=5356, help="gRPC port")
    serve.add_argument("--auth-port", type=int, default=8088, help="HTTP auth service port")
    serve.add_argument("--log-level", default="INFO", help="logging level")
    key = commands.add_parser("create-apikey", help="create an API key and print it as JSON")
    key.add_argument("--data-dir", required=True, help="the server's data directory")
    key.add_argument(
        "--permissions",
        default=",".join(ALL_PERMISSIONS),
        help="comma-separated permissions (default: all)",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        run(args.data_dir, args.host, args.port, args.auth_port)
        return 0
    permissions = [p.strip() for p in args.permissions.split(",") if p.strip()]
    unknown = sorted(set(permissions) - set(ALL_PERMISSIONS))
    if unknown:
        parser.error(f"unknown permissions: {', '.join(unknown)}")
    json.dump(create_key(Path(args.data_dir), permissions), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
