"""``python -m prefloop.serve``: ``prefloop serve`` without the main CLI (the same options)."""

import argparse

from prefloop.serve.cli import DEFAULT_DB, serve_command

parser = argparse.ArgumentParser(prog="python -m prefloop.serve", description=__doc__)
parser.add_argument("--db", default=DEFAULT_DB, help="sqlite:///file.db or postgresql://...")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--init", action="store_true", help="create and print the admin token once")
parser.add_argument("--workers", type=int, default=1, help="processes (>1: PostgreSQL only)")
parser.add_argument(
    "--allow-private-webhooks",
    action="store_true",
    help="let webhooks go to loopback, private and link-local addresses",
)
args = parser.parse_args()
serve_command(
    args.db,
    args.host,
    args.port,
    args.init,
    workers=args.workers,
    allow_private_webhooks=args.allow_private_webhooks,
)
