"""``insidetrack``: the one command for people at a terminal.

    insidetrack up                 start the local stack, print where things are, Ctrl-C stops all
    insidetrack down               stop everything `up` or `infra up` started
    insidetrack infra provision|up|down|status   (provision: download and build, no start)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared.config import ConfigError, Settings, load_settings
from shared.infra import local
from shared.infra.process import Daemon, InfraError
from shared.lifecycle import Shutdown


def _print_status(settings: Settings) -> None:
    for name, info in local.status(settings).items():
        state = "ready" if info["ready"] else ("starting/unhealthy" if info["pid"] else "stopped")
        print(f"  {name:<9} {state:<18} pid={info['pid'] or '-':<8} log={info['log']}")


def cmd_infra(args, settings: Settings) -> int:
    if args.action == "provision":
        for component in local.components(settings):
            print(f"{component.daemon.name}: {component.provision()}")
    elif args.action == "up":
        for name, outcome in local.up(settings).items():
            print(f"{name}: {outcome}")
        _print_urls(settings)
    elif args.action == "down":
        for name, outcome in local.down(settings).items():
            print(f"{name}: {outcome}")
    else:
        _print_status(settings)
        if args.json:
            print(json.dumps(local.status(settings)))
    return 0


def _print_urls(settings: Settings) -> None:
    print(f"  Kafka bootstrap : {','.join(settings.kafka_servers)}")
    print(f"  MongoDB (FerretDB): {settings.mongo_uri}")
    print(f"  logs            : {settings.log_dir}")


def cmd_up(args, settings: Settings) -> int:
    """Start everything, print where it is, and keep it running until Ctrl-C or SIGTERM."""
    shutdown = Shutdown().install()
    supervisor = _supervisor(settings)
    if supervisor.pid() is not None:
        print(f"insidetrack up is already running (pid {supervisor.pid()}); `make down` stops it.", file=sys.stderr)
        return 1
    supervisor.run_dir.mkdir(parents=True, exist_ok=True)
    supervisor.pidfile.write_text(str(os.getpid()))
    try:
        for name, outcome in local.up(settings).items():
            print(f"{name}: {outcome}")
        print("Inside Track local stack is up:")
        _print_urls(settings)
        print("Press Ctrl-C (or run `make down` elsewhere) to stop everything.", flush=True)
        while not shutdown.wait(1.0):
            if any(info["pid"] is None for info in local.status(settings).values()):
                print("A component stopped (see its log); stopping the rest.", file=sys.stderr)
                return 1
        return 0
    finally:
        print("Stopping ...", flush=True)
        for name, outcome in local.down(settings).items():
            print(f"{name}: {outcome}")
        supervisor.pidfile.unlink(missing_ok=True)


def _supervisor(settings: Settings) -> Daemon:
    """The foreground `insidetrack up` process, so `down` from another terminal can stop it."""
    return Daemon("up", settings.run_dir, settings.log_dir, marker="insidetrack")


def cmd_down(args, settings: Settings) -> int:
    if _supervisor(settings).stop(timeout=60):
        print("insidetrack up: stopped")
    for name, outcome in local.down(settings).items():
        print(f"{name}: {outcome}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insidetrack", description="Inside Track command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local stack in the foreground; Ctrl-C stops it").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(func=cmd_down)
    infra = sub.add_parser("infra", help="manage Kafka and FerretDB")
    infra.add_argument("action", choices=["provision", "up", "down", "status"])
    infra.add_argument("--json", action="store_true", help="status as JSON too")
    infra.set_defaults(func=cmd_infra)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.func(args, settings)
    except ConfigError as exc:
        print(f"insidetrack: {exc}", file=sys.stderr)
        return 2
    except InfraError as exc:
        print(f"insidetrack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
