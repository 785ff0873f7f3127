"""Run the kudos process: ``python -m services.recognition.kudos``."""

import logging
import os
import signal

from services.recognition.kudos.app import KudosRuntime, build_runtime
from services.recognition.kudos.config import KudosSettings
from shared.serve import serve

log = logging.getLogger(__name__)


def arm_faults(runtime: KudosRuntime) -> None:
    """Install the test faults the settings ask for (never in production: the settings refuse it)."""
    if not runtime.settings.fault_crash_after_state_write:
        return
    log.warning("fault armed: this process dies right after its next state write")

    def crash(*_args) -> None:
        # Called by the handler right after the single write that stored the kudos and its
        # event, in place of waking the outbox relay: the event is pending, nothing published.
        os.kill(os.getpid(), signal.SIGKILL)

    runtime.service.notify = crash


def main() -> None:
    serve("kudos", KudosSettings, build_runtime, port_of=lambda s: s.kudos_port, on_start=arm_faults)


if __name__ == "__main__":
    main()
