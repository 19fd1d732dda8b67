"""Start a planned flow's workers, watch them, and stop them in order.

Shutdown, in every mode, runs from the sources down: a source ends (by itself or because a
stop was requested), its output queue closes once its last worker is done, consumers drain
what is queued and end in turn, and so on to the sinks. A stage failure or an exceeded drain
deadline is the hard stop instead: every queue is aborted and the workers close at once.

Exit codes: 0 finished (or stopped and drained); 1 a stage failed or the drain deadline
passed with records still queued; 130 a second SIGINT/SIGTERM forced the exit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ..sdk import Source, Stage, StageConfig, StageContext, StageFailed, StageKind
from ._formats import admission
from ._instrument import Instrument
from ._plan import FlowPlan, StagePlan
from ._queue import DEFAULT_MAX_BYTES, BatchQueue, InputReader
from ._stats import StageStats, WorkerStats
from ._workers import loop_for

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_DRAIN_TIMEOUT", "EXIT_FAILED", "EXIT_FORCED", "EXIT_OK", "FlowRun"]

DEFAULT_BATCH_SIZE = 1024
DEFAULT_DRAIN_TIMEOUT = 30.0
EXIT_OK, EXIT_FAILED, EXIT_FORCED = 0, 1, 130


class FlowRun:
    """One run of a planned flow. ``run()`` starts it and blocks until it has ended."""

    def __init__(
        self,
        plan: FlowPlan,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        instruments: Sequence[Instrument] = (),
        queue_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.plan = plan
        self.batch_size = batch_size
        self.drain_timeout = drain_timeout
        self.instruments = tuple(instruments)
        self.log = logging.getLogger(f"flowpipe.{plan.name}")
        self.queues = {
            name: BatchQueue(
                name, cap, max_bytes=queue_max_bytes, admit=admission(name, plan.queue_formats.get(name))
            )
            for name, cap in plan.queue_capacities.items()
        }
        self.stats = [StageStats(stage) for stage in plan.stages]
        self._shared: dict[str, dict[str, Any]] = {stage.name: {} for stage in plan.stages}
        self.failure: StageFailed | None = None
        self.stopping = threading.Event()  # sources end; the rest drains
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._live = 0
        self._opened = 0
        self._stop_deadline: float | None = None
        self._threads: list[threading.Thread] = []
        self._instances: list[Stage[StageConfig]] = []  # created so far, to wake on a stop
        self.started_at = 0.0  # time.monotonic() of start()

    @property
    def state(self) -> str:
        """starting → running (every worker opened its stage) → draining → finished or failed."""
        if self.failure is not None:
            return "failed"
        if self._done.is_set():
            return "finished"
        if self.stopping.is_set():
            return "draining"
        return "running" if self._opened == len(self._threads) else "starting"

    # -- control ---------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Graceful stop: sources end, in-flight records drain to the sinks."""
        if not self.stopping.is_set():
            self.log.info("%s: stopping sources, draining (deadline %g s)", reason, self.drain_timeout)
            self._stop_deadline = time.monotonic() + self.drain_timeout
            self.stopping.set()
            self._wake_all()

    def abort(self) -> int:
        """Hard stop. Returns the number of queued records abandoned."""
        self.stopping.set()
        self._wake_all()
        return sum(queue.abort() for queue in self.queues.values())

    def _wake_all(self) -> None:
        """End every stage's idle wait so that the stop is seen at once."""
        with self._lock:
            instances = list(self._instances)
        for instance in instances:
            instance.context.wake()
            if isinstance(instance, Source):
                instance.wake()

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        for stage in self.plan.stages:
            if stage.output is not None:
                self.queues[stage.output].add_producers(stage.threads)
        for stats in self.stats:
            stage = stats.plan
            if stage.fused_into is not None:  # its only reader takes its files: nothing comes
                self.log.info("stage '%s': not run: '%s' reads its files", stage.name, stage.fused_into)
                if stage.output is not None:
                    for _ in range(stage.threads):
                        self.queues[stage.output].producer_done()
                continue
            for index in range(stage.threads):
                worker = WorkerStats()
                stats.workers.append(worker)
                thread = threading.Thread(
                    target=self._worker,
                    args=(stage, index, worker),
                    name=f"{stage.name}-{index}",
                    daemon=True,
                )
                self._threads.append(thread)
        self._live = len(self._threads)
        self.started_at = time.monotonic()
        if not self._threads:
            self._done.set()
        for thread in self._threads:
            thread.start()

    def wait(self) -> int:
        """Block until every worker ended (or the drain deadline passed); the exit code."""
        while not self._done.wait(0.1):
            deadline = self._stop_deadline
            if deadline is not None and time.monotonic() > deadline and not self._done.is_set():
                abandoned = self.abort()
                self.log.error(
                    "drain deadline of %g s passed; %d queued records abandoned",
                    self.drain_timeout,
                    abandoned,
                )
                self._join(5.0)
                return EXIT_FAILED
        self._join(None)
        return self._finish()

    def run(self) -> int:
        """Start, handle SIGINT/SIGTERM (when on the main thread), wait; the exit code."""
        with self._signals():
            self.start()
            for instrument in self.instruments:
                instrument.flow_started(self)
            code = self.wait()
            for instrument in self.instruments:
                instrument.flow_ended(self, code)
            return code

    def _join(self, timeout: float | None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _finish(self) -> int:
        elapsed = time.monotonic() - self.started_at
        for stats in self.stats:
            self.log.info("stage '%s': %d in, %d out", stats.plan.name, stats.records_in, stats.records_out)
        if self.failure is not None:
            return EXIT_FAILED
        sinks = sum(s.records_in for s in self.stats if s.plan.info.kind is StageKind.SINK)
        if self.stopping.is_set():
            self.log.info("stopped and drained: %d records reached the sinks in %.3f s", sinks, elapsed)
        elif self.plan.job:
            self.log.info("job finished: %d records reached the sinks in %.3f s", sinks, elapsed)
        else:
            self.log.info(
                "every source ended by itself; drained and finished: %d records in %.3f s", sinks, elapsed
            )
        return EXIT_OK

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        received = 0

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Count first: a second signal may interrupt this very handler.
            nonlocal received
            received += 1
            name = signal.Signals(signum).name
            if received > 1:
                self.log.warning("%s again: exiting at once", name)
                sys.stderr.flush()
                os._exit(EXIT_FORCED)
            self.request_stop(name)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- one worker thread -----------------------------------------------------------------

    def _worker(self, stage: StagePlan, index: int, stats: WorkerStats) -> None:
        instance: Stage[StageConfig] | None = None
        opened = False
        output = self.queues[stage.output] if stage.output is not None else None
        output_open = output is not None

        def close_output() -> None:
            nonlocal output_open
            if output_open and output is not None:
                output_open = False
                output.producer_done()

        try:
            self._apply_os_settings(stage)
            context = StageContext(
                flow_name=self.plan.name,
                stage_name=stage.name,
                stage_type=stage.info.type_name,
                worker_index=index,
                worker_count=stage.threads,
                inputs=tuple(name for name, _ in stage.inputs),
                shared=self._shared[stage.name],
                stop=self.stopping,
                logger=logging.getLogger(f"flowpipe.{self.plan.name}.{stage.name}"),
                request_stop=self.request_stop,
                scans=dict(stage.scans),
                input_schemas=dict(stage.input_schemas),
            )
            instance = stage.info.stage_class(stage.config, context)
            for instrument in self.instruments:
                instance = instrument.wrap_stage(self, stage, instance)
            with self._lock:
                self._instances.append(instance)
            if self.stopping.is_set():
                context.wake()  # a stop that came before this worker registered
            instance.open()
            opened = stats.opened = True
            with self._lock:
                self._opened += 1
            reader = InputReader([(name, self.queues[queue]) for name, queue in stage.inputs])
            limit = min(self.batch_size, output.capacity) if output is not None else self.batch_size
            loop_for(instance, reader, output, stats, self.stopping, limit, close_output)()
        except BaseException as error:
            self._fail(stage, stats, error)
        finally:
            if opened and instance is not None:
                try:
                    instance.close()
                except BaseException as error:
                    self._fail(stage, stats, error)
            close_output()
            with self._lock:
                self._live -= 1
                if self._live == 0:
                    self._done.set()

    def _fail(self, stage: StagePlan, stats: WorkerStats, error: BaseException) -> None:
        stats.errors += 1
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = StageFailed(stage.name, stage.info.type_name, error)
        if first:
            self.log.error("%s", self.failure, exc_info=self.log.isEnabledFor(logging.DEBUG))
            self.abort()
        else:
            self.log.debug("also failed after the flow stopped: stage '%s': %r", stage.name, error)

    def _apply_os_settings(self, stage: StagePlan) -> None:
        # On Linux, pid 0 means the calling thread for both calls.
        if stage.cpus:
            try:
                os.sched_setaffinity(0, stage.cpus)
            except (OSError, AttributeError) as error:
                self.log.warning("stage '%s': cannot pin to CPUs %s: %s", stage.name, list(stage.cpus), error)
        if stage.realtime_priority is not None:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(stage.realtime_priority))
            except (OSError, AttributeError) as error:
                self.log.warning(
                    "stage '%s': cannot set realtime priority %d: %s (needs CAP_SYS_NICE)",
                    stage.name,
                    stage.realtime_priority,
                    error,
                )
