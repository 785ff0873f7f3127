"""Run the points process: ``python -m services.recognition.points``."""

from services.recognition.points.app import build_runtime
from services.recognition.points.config import PointsSettings
from shared.serve import serve


def main() -> None:
    serve("points", PointsSettings, build_runtime, port_of=lambda s: s.points_port)


if __name__ == "__main__":
    main()
