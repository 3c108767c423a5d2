"""Progress of a Ray Train run on the driver, whatever the Ray session's ``log_to_driver``.

Ray Train calls ``UserCallback.after_report`` in its controller actor once every worker has reported;
``ReportRelay`` forwards rank 0's metrics through a Ray queue (a zero-CPU actor) to a driver thread, which
logs the per-epoch line and hands every report to the caller's ``on_report``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

import ray.train

__all__ = ["ReportRelay", "relay", "epoch_line"]

log = logging.getLogger("training")


class ReportRelay(ray.train.UserCallback):
    """Runs in the Train controller: rank 0's metrics (plus the checkpoint path) onto the queue."""

    def __init__(self, queue, stage: str):
        self.queue, self.stage = queue, stage

    def after_report(self, run_context, metrics, checkpoint):
        if not metrics:
            return
        m = {**metrics[0], "stage": self.stage, "checkpoint": checkpoint.path if checkpoint else None}
        with contextlib.suppress(Exception):  # progress must never fail training
            self.queue.put_nowait(m)


def epoch_line(m: dict, epochs: int) -> str:
    return (
        f"[{m['stage']}] epoch {m['epoch']}/{epochs}: loss {m['train_loss']:.4f}, val loss "
        f"{m['val_loss']:.4f}, {m['windows_per_s']:.0f} windows/s, step {m['global_step']}"
    )


@contextlib.contextmanager
def relay(stage: str, epochs: int, on_report: Callable[[dict], None] | None) -> Iterator[ReportRelay]:
    """A ``ReportRelay`` for ``RunConfig(callbacks=[...])``; its reports are logged and passed to
    ``on_report`` on this thread's side until the block exits."""
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})
    done = threading.Event()

    def handle(m: dict) -> None:
        if m.get("kind") == "epoch":
            log.info("%s", epoch_line(m, epochs))
        else:
            log.debug("[%s] step %s: loss %.4f", stage, m.get("global_step"), m.get("train_loss", 0.0))
        if on_report is not None:
            try:
                on_report(m)
            except Exception:  # noqa: BLE001
                log.exception("on_report callback failed (ignored)")

    def pump() -> None:
        while not done.is_set():
            try:
                handle(queue.get(timeout=0.5))
            except Empty:
                continue
            except Exception:  # noqa: BLE001 - the queue actor went away with the session
                return

    thread = threading.Thread(target=pump, name=f"train-progress-{stage}", daemon=True)
    thread.start()
    try:
        yield ReportRelay(queue, stage)
    finally:
        done.set()
        thread.join(timeout=5)
        try:
            while not queue.empty():
                handle(queue.get_nowait())
        except Exception:  # noqa: BLE001
            pass
        with contextlib.suppress(Exception):
            queue.shutdown()
