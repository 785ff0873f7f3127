"""``insidetrack``: the one command for people at a terminal.

    insidetrack up                 start Kafka, FerretDB and the services; Ctrl-C stops all
    insidetrack down               stop everything `up` or `infra up` started
    insidetrack infra provision|up|down|status   (provision: download and build, no start)
    insidetrack import-people FILE.csv            import people as the admin; bad rows by line
    insidetrack import-kudos FILE.csv             import kudos history as the admin (kudos service running)
    insidetrack import-requests FILE.csv          import request history as the admin (requests service running)
    insidetrack events tail TOPIC [--from-beginning] [--dlq] [-n N]
    insidetrack rebuild-points                    re-score history with the current rules file
    insidetrack token EMAIL [--portal]            print a sign-on token (or a portal link) for that person
    insidetrack ensure-topics                     create missing topics on a running cluster
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ops.demo.loader import DemoError
from ops.infra import fonts, local
from ops.infra.process import Daemon, InfraError
from ops.supervisor import SERVICES, Supervisor
from shared.config import ConfigError, Settings, load_settings
from shared.events import TOPICS
from shared.fonts import font_dir
from shared.lifecycle import Shutdown


def _print_status(settings: Settings) -> None:
    for name, info in local.status(settings).items():
        state = "ready" if info["ready"] else ("starting/unhealthy" if info["pid"] else "stopped")
        print(f"  {name:<9} {state:<18} pid={info['pid'] or '-':<8} log={info['log']}")


def cmd_infra(args, settings: Settings) -> int:
    if args.action == "provision":
        for component in local.components(settings):
            print(f"{component.daemon.name}: {component.provision()}")
        print(f"fonts: {fonts.provision(font_dir(settings))}")
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
    """Start everything (loading the demo company on the first start), print where it is, and
    keep it running until Ctrl-C or SIGTERM."""
    from ops.demo.start import DemoState, load_demo_company, prepare_first_start

    shutdown = Shutdown().install()
    me = _up_process(settings)
    if me.pid() is not None:
        print(f"insidetrack up is already running (pid {me.pid()}); `make down` stops it.", file=sys.stderr)
        return 1
    me.run_dir.mkdir(parents=True, exist_ok=True)
    me.pidfile.write_text(str(os.getpid()))
    demo_env = prepare_first_start(settings)  # first start: the services run on the demo clock
    services = Supervisor(settings, env=demo_env)
    try:
        print(f"fonts: {fonts.provision(font_dir(settings))}")
        for name, outcome in local.up(settings).items():
            print(f"{name}: {outcome}")
        print("Starting services ...", flush=True)
        services.start_all()
        gateway_url = f"http://127.0.0.1:{settings.gateway_port}"
        admin_email = _admin_email()
        admin_token = _sign_on(admin_email)
        if demo_env:
            def keep_running() -> None:
                for message in services.check():
                    print(message, file=sys.stderr, flush=True)

            load_demo_company(settings, gateway_url, admin_token, _token_for,
                              say=lambda line: print(line, flush=True), between=keep_running,
                              stop=shutdown.requested.is_set)
        elif (DemoState(settings).read() or {}).get("state") == "loading":
            print("The demo company's first load was interrupted, so its data is partial; for a fresh one: "
                  "make down && make clean && make up", file=sys.stderr)
        _print_greeting(settings, gateway_url, admin_email, admin_token)
        print("Press Ctrl-C (or run `make down` elsewhere) to stop everything.", flush=True)
        while not shutdown.wait(1.0):
            for message in services.check():
                print(message, file=sys.stderr, flush=True)
            if None in local.pids(settings).values():  # alive is enough: no probe every second
                print("Kafka or FerretDB stopped (see var/log); stopping the rest.", file=sys.stderr)
                return 1
        return 0
    except DemoError as exc:
        print(f"insidetrack: the demo company could not be loaded: {exc} (logs: {settings.log_dir})", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...", flush=True)
        services.stop_all()
        for name, outcome in local.down(settings).items():
            print(f"{name}: {outcome}")
        me.pidfile.unlink(missing_ok=True)


def _print_greeting(settings: Settings, gateway_url: str, admin_email: str, admin_token: str) -> None:
    from ops.demo.start import greeting

    print("Inside Track is up:")
    for line in greeting(gateway_url, admin_email, admin_token, _token_for, _sign_on(admin_email, screen=True)):
        print(line)
    _print_urls(settings)
    for spec in SERVICES:  # what the supervisor started, each with its log (ManagedProcess.logfile)
        print(f"  {spec.name + ' API':<16}: http://127.0.0.1:{spec.port(settings)} (log: {settings.log_dir / (spec.name + '.log')})")


def _admin_email() -> str:
    from services.requests.config import RequestsSettings

    return load_settings(RequestsSettings).admin_email


def _token_for(person: dict) -> str:
    """Sign a token for a person the directory answered with (``id``, ``email``, ``role``)."""
    from services.gateway.auth import issue_token
    from services.gateway.config import GatewaySettings

    return issue_token(load_settings(GatewaySettings), person["id"], person["email"], person["role"].lower())


def _sign_on(email: str, screen: bool = False, minutes: int | None = None) -> str:
    """A signed token for the person with this email, found in the directory (local sign-on)."""
    from services.gateway.auth import issue_token
    from services.gateway.config import GatewaySettings

    person = _person_for_sign_on(email)
    if person is None:
        raise SignOnError(f"nobody with the email {email} is in the directory "
                          "(import people first: insidetrack import-people FILE.csv)")
    if not person["active"]:
        raise SignOnError(f"{person['name']} is deactivated")
    return issue_token(load_settings(GatewaySettings), person["id"], person["email"], person["role"],
                       ttl_minutes=minutes, screen=screen)


def _person_for_sign_on(email: str) -> dict | None:
    """The person with this email (the configured admin is created on an empty directory): asked
    of the running requests service (two calls), or, when it does not run, found here (its
    runtime built for the lookup, as ``import-people`` does then)."""
    from dataclasses import asdict

    from ops.infra.process import port_open
    from services.requests.config import RequestsSettings

    rs = load_settings(RequestsSettings)
    if port_open(rs.requests_port):
        return _person_through_service(f"http://127.0.0.1:{rs.requests_port}", rs.internal_token, email)
    from services.requests.app import build_runtime

    runtime = build_runtime(rs)
    try:
        if email.lower() == rs.admin_email:
            runtime.service.ensure_admin(email)
        person = runtime.service.repo.person_by_email(email)
    finally:
        runtime.stop()
    return asdict(person) if person is not None else None


def _person_through_service(url: str, token: str, email: str) -> dict | None:
    """The admin (created if missing), then as the admin the people whose name or email holds
    ``email``, page by page, until the one with exactly that email."""
    import requests as http

    from services.requests.importer import ImportFailed, admin_through_service, service_answer
    from shared.auth import internal_headers

    try:
        admin = admin_through_service(url, token)
        wanted, after = email.strip().lower(), None
        if admin["email"] == wanted:
            return admin
        while True:
            params = {"search": wanted, "first": 100, **({"after": after} if after else {})}
            page = service_answer(http.get(f"{url}/people", params=params, headers=internal_headers(token, admin["id"]),
                                           timeout=30))
            found = next((p for p in page["items"] if p["email"] == wanted), None)
            if found is not None or not page["page_info"]["has_next_page"]:
                return found
            after = page["page_info"]["end_cursor"]
    except (ImportFailed, OSError) as exc:
        raise SignOnError(f"the requests service at {url} could not say: {exc}") from None


class SignOnError(Exception):
    """No token for that email: unknown or deactivated."""


def _up_process(settings: Settings) -> Daemon:
    """The foreground `insidetrack up` process, so `down` from another terminal can stop it."""
    return Daemon("up", settings.run_dir, settings.log_dir, marker="insidetrack")


def cmd_down(args, settings: Settings) -> int:
    if _up_process(settings).stop(timeout=60):
        print("insidetrack up: stopped")
    for name, outcome in local.down(settings).items():
        print(f"{name}: {outcome}")
    return 0


def _read_csv(path: str) -> str | None:
    """The text of a CSV file (a BOM dropped), or None after saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8-sig") as file:
            return file.read()
    except OSError as exc:
        print(f"insidetrack: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


def cmd_import_people(args, settings: Settings) -> int:
    """Import people from a CSV file as the configured admin; report bad rows by line.

    Through the running requests service (its relay publishes the people at once); when it
    does not run, here, publishing every event before returning."""
    from services.requests.config import RequestsSettings
    from services.requests.importer import ImportFailed, import_in_process, import_through_service
    from ops.infra.process import port_open

    text = _read_csv(args.file)
    if text is None:
        return 1
    rs = load_settings(RequestsSettings)
    try:
        if port_open(rs.requests_port):
            admin, report = import_through_service(f"http://127.0.0.1:{rs.requests_port}", rs.internal_token, text)
        else:
            print("(the requests service is not running: importing here, then publishing the events)", flush=True)
            admin, report = import_in_process(rs, text)
    except (ImportFailed, OSError) as exc:
        print(f"insidetrack: {exc}", file=sys.stderr)
        return 1
    print(f"(imported as {admin['email']}, id {admin['id']})")
    print(f"{report['created']} created, {report['updated']} already known (updated where changed), "
          f"{len(report['errors'])} rejected")
    for error in report["errors"]:
        print(f"  line {error['line']}: {error['message']} [{error['code']}]")
    return 1 if report["errors"] else 0


def cmd_import_kudos(args, settings: Settings) -> int:
    """Import kudos history from a CSV file as the configured admin, through the running kudos
    process (its relay publishes the events; this command writes no database itself)."""
    return _import_history(args, settings, "kudos", args.url or f"http://127.0.0.1:{settings.kudos_port}", "/kudos/import")


def cmd_import_requests(args, settings: Settings) -> int:
    """Import request history from a CSV file as the configured admin, through the running
    requests service (its relay publishes the events; this command writes no database itself)."""
    return _import_history(args, settings, "requests", args.url or f"http://127.0.0.1:{settings.requests_port}",
                           "/requests/import")


def _import_history(args, settings: Settings, service: str, url: str, path: str) -> int:
    """Send the file in parts to the running service as the admin; report bad rows by line."""
    from shared.auth import internal_headers
    from shared.csvimport import send_file

    text = _read_csv(args.file)
    if text is None:
        return 1
    admin_email = _admin_email()
    try:
        report = send_file(url, path, internal_headers(settings.internal_token, None), text, admin_email,
                           say=lambda line: print(line, flush=True))
    except (RuntimeError, OSError) as exc:
        print(f"insidetrack: the import stopped: {exc} (is the {service} service running at {url}?)", file=sys.stderr)
        return 1
    print(f"(imported as {admin_email})")
    print(f"{report['imported']} imported, {report['already_imported']} already imported, {report['rejected']} rejected")
    for error in report["errors"]:
        print(f"  line {error['line']}: {error['message']} [{error['code']}]")
    return 1 if report["errors"] else 0


def cmd_token(args, settings: Settings) -> int:
    """Print a signed token for a person in the directory (local use, e.g. GraphiQL, curl)."""
    if args.screen and args.portal:
        print("insidetrack: --screen and --portal do not go together (a screen token cannot act)", file=sys.stderr)
        return 2
    try:
        token = _sign_on(args.email, screen=args.screen, minutes=args.minutes)
    except SignOnError as exc:
        print(f"insidetrack: {exc}", file=sys.stderr)
        return 1
    if args.portal:
        from services.gateway.portal import portal_link

        token = portal_link(f"http://127.0.0.1:{settings.gateway_port}", token)
    print(token)
    return 0


def cmd_rebuild_points(args, settings: Settings) -> int:
    """Re-score all history with the current rules file, into fresh collections, then swap."""
    from services.recognition.directory import Directory, DirectoryPersonDoc
    from services.recognition.points.config import PointsSettings
    from services.recognition.points.rebuild import rebuild
    from services.recognition.points.rules import load_rules
    from shared.db import connect
    from ops.infra.process import port_open

    ps = load_settings(PointsSettings)
    running = [spec.port(ps) for spec in SERVICES if spec.module == "services.recognition.points" and port_open(spec.port(ps))]
    if running:
        print(f"insidetrack: a points process is running (port {', '.join(map(str, running))}); stop them first "
              "(Ctrl-C `make up`, then `insidetrack infra up`), rebuild, then start again.", file=sys.stderr)
        return 1
    rules = load_rules(ps.rules_file)
    db = connect(ps, "points")
    DirectoryPersonDoc.ensure_indexes()
    report = rebuild(ps, db, rules, Directory())
    print(f"re-scored {report.events} events into {report.awards} awards in {report.seconds}s "
          f"({report.skipped} invalid messages skipped) with {ps.rules_file}")
    return 0


def cmd_ensure_topics(args, settings: Settings) -> int:
    """Create the missing topics (and their dead-letter twins), grow partition counts.

    What `infra up` does for the local broker; the init step of a compose or cluster deploy.
    """
    import time

    from shared.bus.kafka import ensure_topics, kafka_answers_metadata

    shutdown = Shutdown().install()
    deadline = time.monotonic() + args.wait
    while True:
        try:
            kafka_answers_metadata(settings)
            break
        except Exception as exc:  # noqa: BLE001 - the brokers may still be starting
            if time.monotonic() >= deadline or shutdown.wait(1.0):
                print(f"insidetrack: Kafka at {','.join(settings.kafka_servers)} does not answer: {exc}", file=sys.stderr)
                return 1
    created = ensure_topics(settings)
    print(f"topics ready ({settings.topic_partitions} partitions, replication factor "
          f"{settings.topic_replication_factor}); created: {', '.join(created) or 'none'}")
    return 0


def cmd_events(args, settings: Settings) -> int:
    """Print the events of a topic as they arrive (Ctrl-C stops)."""
    from shared.bus.tail import tail_topic

    shutdown = Shutdown().install()
    return tail_topic(settings, args.topic, from_beginning=args.from_beginning, dlq=args.dlq,
                      limit=args.limit, stop=shutdown.requested)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insidetrack", description="Inside Track command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local stack in the foreground; Ctrl-C stops it").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(func=cmd_down)
    infra = sub.add_parser("infra", help="manage Kafka and FerretDB")
    infra.add_argument("action", choices=["provision", "up", "down", "status"])
    infra.add_argument("--json", action="store_true", help="status as JSON too")
    infra.set_defaults(func=cmd_infra)
    imp = sub.add_parser("import-people", help="import people from a CSV file (email,name,role,department,title,manager_email,active)")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_import_people)
    impk = sub.add_parser("import-kudos", help="import kudos history from a CSV file "
                          "(created_at,giver_email,recipient_emails,message,gesture,values); the kudos service must run")
    impk.add_argument("file")
    impk.add_argument("--url", default=None, help="the kudos service (default http://127.0.0.1:INSIDETRACK_KUDOS_PORT)")
    impk.set_defaults(func=cmd_import_kudos)
    impr = sub.add_parser("import-requests", help="import request history from a CSV file (columns: "
                          "docs/requests-api.md); the requests service must run")
    impr.add_argument("file")
    impr.add_argument("--url", default=None, help="the requests service (default http://127.0.0.1:INSIDETRACK_REQUESTS_PORT)")
    impr.set_defaults(func=cmd_import_requests)
    token = sub.add_parser("token", help="print a signed sign-on token for a person (local use)")
    token.add_argument("email")
    token.add_argument("--minutes", type=int, default=None, help="lifetime (default INSIDETRACK_TOKEN_TTL_MINUTES)")
    token.add_argument("--screen", action="store_true", help="a read-only token for a leaderboard screen")
    token.add_argument("--portal", action="store_true", help="print a link that opens the portal signed in as that person")
    token.set_defaults(func=cmd_token)
    sub.add_parser("rebuild-points", help="re-score all history with the current rules (points process stopped)").set_defaults(func=cmd_rebuild_points)
    topics = sub.add_parser("ensure-topics", help="create missing topics on the configured Kafka; grow partitions")
    topics.add_argument("--wait", type=int, default=60, help="seconds to wait for the brokers to answer")
    topics.set_defaults(func=cmd_ensure_topics)
    events = sub.add_parser("events", help="watch events on a topic")
    events.add_argument("action", choices=["tail"])
    events.add_argument("topic", choices=sorted(TOPICS))
    events.add_argument("--from-beginning", action="store_true", help="start at the oldest event, not now")
    events.add_argument("--dlq", action="store_true", help="the topic's dead letters, with their reasons")
    events.add_argument("-n", "--limit", type=int, default=0, help="stop after this many events")
    events.set_defaults(func=cmd_events)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.func(args, settings)
    except ConfigError as exc:
        print(f"insidetrack: {exc}", file=sys.stderr)
        return 2
    except (InfraError, fonts.FontFetchError) as exc:
        print(f"insidetrack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
