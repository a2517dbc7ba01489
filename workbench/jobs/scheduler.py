"""One queue per device for all model work of all sessions: a concurrency limit, round-robin
fairness across sessions, identical work done once and compatible work batched into one pass.

The scheduler runs no threads of its own. Each request waits in the thread that asked for it
(a Streamlit script thread) and, once its turn comes, runs the work there, so progress bars and
Stop keep working exactly as without a queue. What runs is a callable, so it does not matter
whether the engine is in this process or behind a remote client.

- **Fairness.** Each session has its own FIFO; a free slot goes to the next session in turn
  that has work waiting, so one session's ten queued requests delay another session's single
  request by at most one request, not ten.
- **Identical work** (same ``key``: model, input, method, settings, target) queued or running
  for several sessions is computed once; every waiter gets the result.
- **Batching.** Jobs that share a ``batch_key`` (model, method and settings; different inputs)
  and are queued together run as one call of their ``run_batch`` with all payloads, up to
  ``max_batch`` of them: one batched pass instead of several.
- **Turns.** A long job does not hold its slot to the end: between its chunks of model
  passes (where the engine reports progress) it calls ``yield_turn``, and once it has run for
  ``quantum_s`` while another session has work queued, it steps aside to the back of the round
  and continues where it was when its turn comes again. Its state simply waits in its own
  thread, so nothing is recomputed; the engine holds the model only per pass, so the work
  that runs meanwhile is never blocked by it. One heavy link then delays another user's
  request by at most a quantum and a chunk, not by its whole run.
- **Stop.** A waiter that stops (Streamlit raises in its thread when the user clicks Stop or
  changes a setting) leaves the queue; a job nobody waits for any more is dropped. If the
  thread running a batch is stopped, the other jobs of the batch go back to the queue.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

# How often a waiter wakes to report its position (and to let Streamlit interrupt it).
WAIT_POLL_S = 0.25
# How long a job runs before it lets queued work of other sessions go first: long enough that
# ordinary requests (well under a second on a GPU, a few on a CPU) finish in one turn.
QUANTUM_S = 1.0
_turn = threading.local()  # the scheduler and batch the calling thread is running, if any


@dataclass
class Job:
    """One unit of model work. ``run_batch(payloads)`` returns one result per payload."""

    session: Hashable
    key: Hashable
    payload: Any
    run_batch: Callable[[Sequence[Any]], Sequence[Any]]
    cost_s: float = 1.0
    batch_key: Hashable | None = None  # None: never batched with other jobs
    waiters: int = 0
    state: str = "queued"  # queued -> running -> done
    result: Any = None
    error: BaseException | None = None
    batch: list[Job] = field(default_factory=list, repr=False)
    runner_claimed: bool = False
    seq: int = 0
    suspended: bool = False  # stepped aside in the middle of its run (yield_turn)
    ran_s: float = 0.0  # run time of its earlier turns
    paused_s: float = 0.0  # time spent stepped aside


@dataclass(frozen=True)
class Waiting:
    """What a waiter is told while its job is queued."""

    position: int  # 1 = next to run
    queued: int  # jobs queued on this device
    running: int
    wait_s: float  # estimated seconds until it starts


@dataclass
class Stats:
    submitted: int = 0
    coalesced: int = 0  # requests answered by another session's identical job
    batches: int = 0
    batched_jobs: int = 0  # jobs that ran inside a batch of more than one
    cancelled: int = 0


class Scheduler:
    def __init__(self, concurrency: int = 1, max_batch: int = 8,
                 clock: Callable[[], float] = time.monotonic, quantum_s: float = QUANTUM_S):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.max_batch = max_batch
        self.quantum_s = quantum_s
        self.clock = clock
        self._cond = threading.Condition()
        self._queues: OrderedDict[Hashable, deque[Job]] = OrderedDict()  # round-robin order
        self._jobs: dict[Hashable, Job] = {}  # queued or running, by key
        self._running: list[list[Job]] = []
        self._started: dict[int, float] = {}  # id(batch leader) -> start time
        self._seq = itertools.count()
        self.stats = Stats()

    # ---- what the pages see -----------------------------------------------------------------
    def queue_length(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def running(self) -> int:
        with self._cond:
            return len(self._running)

    def waiting(self, job: Job) -> Waiting | None:
        with self._cond:
            return self._waiting_locked(job)

    def _order_locked(self) -> list[Job]:
        """Queued jobs in the order they will start (round robin over sessions)."""
        queues = [list(q) for q in self._queues.values() if q]
        order = []
        for tier in itertools.zip_longest(*queues):
            order.extend(j for j in tier if j is not None)
        return order

    def _waiting_locked(self, job: Job) -> Waiting | None:
        if job.state != "queued":
            return None
        order = self._order_locked()
        position = order.index(job) + 1 if job in order else len(order)
        now = self.clock()
        # Work still to do on the slots, then the jobs ahead of this one spread over them.
        remaining = sorted(max(0.0, sum(j.cost_s for j in batch) - batch[0].ran_s
                               - (now - self._started[id(batch[0])]))
                           for batch in self._running)
        slots = remaining + [0.0] * (self.concurrency - len(remaining))
        slots.sort()
        for ahead in order[:position - 1]:
            slots[0] += ahead.cost_s
            slots.sort()
        return Waiting(position, len(order), len(self._running), slots[0])

    # ---- the one entry point ----------------------------------------------------------------
    def run(self, job: Job, on_wait: Callable[[Waiting], None] | None = None,
            on_start: Callable[[], None] | None = None) -> Any:
        """Queue ``job`` (or join the identical one already there), wait for its turn and return
        its result. ``on_wait`` is called from this thread about every WAIT_POLL_S while queued;
        ``on_start`` once, when this thread starts running the work."""
        job = self._submit(job)
        try:
            while True:
                with self._cond:
                    if job.state == "done":
                        break
                    runs_here = (job.state == "running" and job.batch and job.batch[0] is job
                                 and not job.runner_claimed)
                    if runs_here:
                        job.runner_claimed = True
                    else:
                        self._cond.wait(WAIT_POLL_S)
                        waiting = self._waiting_locked(job)
                if runs_here:
                    if on_start is not None:
                        on_start()
                    self._execute(job.batch)
                elif waiting is not None and on_wait is not None:
                    on_wait(waiting)
        except BaseException:
            self._leave(job)
            raise
        with self._cond:
            job.waiters -= 1
        if job.error is not None:
            raise job.error
        return job.result

    def _submit(self, job: Job) -> Job:
        with self._cond:
            self.stats.submitted += 1
            existing = self._jobs.get(job.key)
            if existing is not None:
                existing.waiters += 1
                self.stats.coalesced += 1
                return existing
            job.waiters, job.state, job.seq = 1, "queued", next(self._seq)
            self._jobs[job.key] = job
            self._queues.setdefault(job.session, deque()).append(job)
            self._dispatch_locked()
            return job

    def _leave(self, job: Job) -> None:
        """A waiter stopped; drop the job if it is still queued and nobody else wants it."""
        with self._cond:
            job.waiters -= 1
            if job.state == "queued" and job.waiters <= 0:
                self._remove_queued_locked(job)
                self.stats.cancelled += 1
                self._cond.notify_all()

    def _remove_queued_locked(self, job: Job) -> None:
        queue = self._queues.get(job.session)
        if queue is not None and job in queue:
            queue.remove(job)
            if not queue:
                del self._queues[job.session]
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]

    # ---- choosing what runs next ------------------------------------------------------------
    def _dispatch_locked(self) -> None:
        while len(self._running) < self.concurrency and self._queues:
            session, queue = next(iter(self._queues.items()))
            leader = queue.popleft()
            # The session goes to the back of the round, keeping its remaining jobs.
            del self._queues[session]
            if queue:
                self._queues[session] = queue
            resumed = leader.suspended
            if resumed:  # its thread waits in yield_turn to go on
                leader.suspended = False
                batch = leader.batch
                for job in batch:
                    job.state = "running"
            else:
                batch = [leader] + self._batch_mates_locked(leader)
                for job in batch:
                    job.state, job.batch, job.runner_claimed = "running", batch, False
            self._running.append(batch)
            self._started[id(leader)] = self.clock()
            if len(batch) > 1 and not resumed:
                self.stats.batches += 1
                self.stats.batched_jobs += len(batch)
        self._cond.notify_all()

    def _batch_mates_locked(self, leader: Job) -> list[Job]:
        if leader.batch_key is None or self.max_batch <= 1:
            return []
        mates = []
        for job in sorted((j for q in self._queues.values() for j in q), key=lambda j: j.seq):
            if len(mates) + 1 >= self.max_batch:
                break
            if job.batch_key == leader.batch_key and not job.suspended:  # mid-run: its own batch
                mates.append(job)
        for job in mates:
            self._remove_queued_locked(job)
            self._jobs[job.key] = job  # still findable for identical requests while it runs
        return mates

    # ---- running a batch in the calling thread ----------------------------------------------
    def _execute(self, batch: list[Job]) -> None:
        leader = batch[0]
        outer, _turn.running = getattr(_turn, "running", None), (self, batch)
        try:
            results = leader.run_batch([j.payload for j in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for "
                                   f"{len(batch)} payloads")
        except Exception as exc:  # noqa: BLE001 - handed to every waiter of the batch
            self._finish(batch, error=exc)
        except BaseException:
            # This thread was stopped (Stop, a changed setting, shutdown): its own job ends
            # here, the others go back to the front of the queue for their own waiters.
            self._requeue(batch)
            raise
        else:
            self._finish(batch, results=results)
        finally:
            _turn.running = outer

    def _finish(self, batch: list[Job], results=None, error: BaseException | None = None) -> None:
        with self._cond:
            for i, job in enumerate(batch):
                job.state = "done"
                job.result = results[i] if results is not None else None
                job.error = error
                if self._jobs.get(job.key) is job:
                    del self._jobs[job.key]
            self._end_batch_locked(batch)

    def _requeue(self, batch: list[Job]) -> None:
        with self._cond:
            leader = batch[0]
            for job in batch:
                # The stopping thread still counts as a waiter of the leader until run()'s
                # handler (_leave) takes it off.
                still_wanted = job.waiters > (1 if job is leader else 0)
                if still_wanted:
                    job.state, job.batch, job.runner_claimed = "queued", [], False
                    self._queues.setdefault(job.session, deque()).appendleft(job)
                    self._queues.move_to_end(job.session, last=False)
                elif self._jobs.get(job.key) is job:
                    job.state = "done"
                    del self._jobs[job.key]
            self._end_batch_locked(batch)

    def _end_batch_locked(self, batch: list[Job]) -> None:
        self._running = [b for b in self._running if b is not batch]
        self._started.pop(id(batch[0]), None)
        self._dispatch_locked()

    # ---- turns: a long job steps aside between chunks -----------------------------------------
    def _others_waiting_locked(self, session: Hashable) -> bool:
        return any(q for s, q in self._queues.items() if s != session)

    def _step_aside(self, batch: list[Job], on_wait: Callable[[Waiting], None] | None) -> float:
        leader = batch[0]
        with self._cond:
            now = self.clock()
            if (not any(b is batch for b in self._running)
                    or now - self._started[id(leader)] < self.quantum_s
                    or not self._others_waiting_locked(leader.session)):
                return 0.0
            leader.ran_s += now - self._started.pop(id(leader))
            self._running = [b for b in self._running if b is not batch]
            leader.state, leader.suspended = "queued", True  # runner_claimed stays: this thread
            self._queues.setdefault(leader.session, deque()).appendleft(leader)
            self._queues.move_to_end(leader.session)  # to the back of the round
            self._dispatch_locked()
        try:
            while True:
                with self._cond:
                    if leader.state == "running":
                        paused = self.clock() - now
                        leader.paused_s += paused
                        return paused
                    self._cond.wait(WAIT_POLL_S)
                    waiting = self._waiting_locked(leader)
                if waiting is not None and on_wait is not None:
                    on_wait(waiting)  # where Streamlit stops this thread on Stop
        except BaseException:
            with self._cond:  # back on a slot, so that _execute's handler ends it as usual
                if leader.suspended:
                    leader.suspended = False
                    self._remove_queued_locked(leader)
                    self._jobs[leader.key] = leader
                    for job in batch:
                        job.state = "running"
                    self._running.append(batch)
                    self._started[id(leader)] = self.clock()
            raise


def yield_turn(on_wait: Callable[[Waiting], None] | None = None) -> float:
    """Called by a job between chunks of its work: if it has run for a quantum and another
    session has work queued, wait (calling ``on_wait`` like a queued request) until its turn
    comes again. Returns the seconds it waited; 0 outside a scheduled job."""
    running = getattr(_turn, "running", None)
    if running is None:
        return 0.0
    scheduler, batch = running
    return scheduler._step_aside(batch, on_wait)
