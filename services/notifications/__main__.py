"""Run the notifications process: ``python -m services.notifications``."""

from services.notifications.app import build_runtime
from services.notifications.config import NotificationsSettings
from shared.serve import serve


def main() -> None:
    serve("notifications", NotificationsSettings, build_runtime, port_of=lambda s: s.notifications_port)


if __name__ == "__main__":
    main()
