"""Run the kudos process: ``python -m services.recognition.kudos``."""

from services.recognition.kudos.app import build_runtime
from services.recognition.kudos.config import KudosSettings
from shared.serve import serve


def main() -> None:
    serve("kudos", KudosSettings, build_runtime, port_of=lambda s: s.kudos_port)


if __name__ == "__main__":
    main()
