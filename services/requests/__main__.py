"""Run the requests service: ``python -m services.requests``."""

from services.requests.app import build_runtime
from services.requests.config import RequestsSettings
from shared.serve import serve


def main() -> None:
    serve("requests", RequestsSettings, build_runtime, port_of=lambda s: s.requests_port,
          on_start=lambda rt: rt.service.ensure_admin(rt.settings.admin_email))


if __name__ == "__main__":
    main()
