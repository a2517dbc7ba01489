"""Keep the load test's browsers below the server's CPU priority (benchmarks/load.py).

A team's browsers run on their own machines; the load test draws twenty of them on the server's
cores. Lowering the test's own priority is not enough: chromium sets its processes' and threads'
niceness itself (renderers back to 0, its GPU and browser threads to -8 when run as root), so
every few seconds each thread of every process under ours, except the server's, is put back to
the wanted niceness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

EVERY_S = 1.0


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) is in parentheses and may hold spaces.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int, exclude: set[int]) -> list[int]:
    """Processes under ``root`` (not itself), leaving out ``exclude`` and everything under it."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def lower(pids: list[int], nice: int) -> int:
    """Every thread of ``pids`` to at least ``nice``; how many were raised."""
    changed = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    tid = int(task.name)
                    if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                        os.setpriority(os.PRIO_PROCESS, tid, nice)
                        changed += 1
    return changed


async def keep_low(nice: int, server_pid: int | None, stop: asyncio.Event) -> None:
    """Until ``stop``: this process and what it started, but the server, at ``nice``."""
    if nice <= 0:
        return
    me = os.getpid()
    exclude = {server_pid} if server_pid else set()
    while not stop.is_set():
        lower([me, *descendants(me, exclude)], nice)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EVERY_S)
