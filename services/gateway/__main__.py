"""Run the gateway: ``python -m services.gateway``."""

from services.gateway.app import build_runtime
from services.gateway.config import GatewaySettings
from shared.serve import serve


def main() -> None:
    serve("gateway", GatewaySettings, build_runtime, port_of=lambda s: s.gateway_port)


if __name__ == "__main__":
    main()
