"""The container health check: ``python -m ops.healthcheck [SERVICE] [--ready]``.

Asks a service in this container for ``/healthz`` (alive) or, with ``--ready``, ``/readyz``
(its dependencies answer) on loopback, and exits 0 when it answers 200. Without a service
name it asks each service's port in turn: one image runs any of the four services, and only
the one its command started listens. Used by the image's HEALTHCHECK and deploy/compose.yaml
(Kubernetes probes call the endpoints directly).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from ops.supervisor import SERVICES
from shared.config import ConfigError, load_settings


def check(url: str, timeout: float) -> str | None:
    """Return None when ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback http only
            return None if answer.status == 200 else f"{url}: HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("service", nargs="?", choices=[s.name for s in SERVICES], help="default: whichever listens")
    parser.add_argument("--ready", action="store_true", help="ask /readyz (dependencies too), not /healthz")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per request")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 2
    path = "/readyz" if args.ready else "/healthz"
    specs = [s for s in SERVICES if args.service in (None, s.name)]
    problems = []
    for spec in specs:
        problem = check(f"http://127.0.0.1:{spec.port(settings)}{path}", args.timeout)
        if problem is None:
            return 0
        problems.append(f"{spec.name} {problem}")
    print("unhealthy: " + "; ".join(problems), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
