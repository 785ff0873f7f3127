"""A consumer process for the replay and shutdown tests (run as ``python -m``).

Its handler makes an idempotent effect (insert keyed by event id) and counts deliveries.
CHILD_KILL_AFTER=N: SIGKILL itself right after the N-th write, before any commit.
CHILD_IDLE_EXIT=S: stop after S idle seconds (to show that nothing more comes).
CHILD_EXIT_AT_EFFECTS=N: stop once N effects exist and the group has committed everything (to let it
finish, replays included, however slow the machine).
Otherwise it runs until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from shared.bus.consumer import ConsumerRunner
from shared.bus.kafka import EventProducer, consumer_lag
from shared.config import load_settings
from shared.db import insert_once, mongo_client
from shared.lifecycle import Shutdown
from shared.logging import configure_logging


def main() -> None:
    settings = load_settings()
    configure_logging("consumer-child", settings.log_level)
    db = mongo_client(settings)[settings.database("bus_test")]
    kill_after = int(os.environ.get("CHILD_KILL_AFTER", "0"))
    idle_exit = float(os.environ.get("CHILD_IDLE_EXIT", "0"))
    exit_at = int(os.environ.get("CHILD_EXIT_AT_EFFECTS", "0"))
    writes = 0
    last_activity = time.monotonic()

    def handler(envelope, data) -> None:
        nonlocal writes, last_activity
        db.deliveries.update_one({"_id": envelope.id}, {"$inc": {"n": 1}}, upsert=True)
        insert_once(db.effects, {"_id": envelope.id, "subject": envelope.subject})
        writes += 1
        last_activity = time.monotonic()
        if kill_after and writes == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    producer = EventProducer(settings, client_id="consumer-child")
    runner = ConsumerRunner(settings, group="child", topics=["people"], handler=handler, producer=producer)
    shutdown = Shutdown().install()
    shutdown.on_stop(runner.stop)
    if idle_exit:
        def watchdog() -> None:
            runner.assigned.wait()
            assigned_at = time.monotonic()
            while not runner.stopping:
                if time.monotonic() - max(last_activity, assigned_at) > idle_exit:
                    runner.stop()
                time.sleep(0.1)
        threading.Thread(target=watchdog, daemon=True).start()
    if exit_at:
        def finished() -> None:
            # Every effect written is not enough: the messages replayed after a kill may still
            # be waiting in another partition of the poll. Stop once the group has committed
            # everything (its lag is 0), which it does only after handling them.
            while not runner.stopping:
                if db.effects.count_documents({}) >= exit_at and consumer_lag(settings, {"child": ("people",)}) == 0:
                    runner.stop()
                time.sleep(0.1)
        threading.Thread(target=finished, daemon=True).start()
    runner.run()
    producer.close()


if __name__ == "__main__":
    main()
