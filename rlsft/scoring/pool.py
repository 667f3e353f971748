"""Answer checking in worker processes, each check bounded in wall time.

sympy (under math-verify) can run for minutes inside C code on an adversarial answer, where no
Python-level timer can stop it, and a timer's signal or asynchronous exception can fire in the
wrong place of the training process. So no check of an answer runs in the training or evaluation
process: `check_many` hands a batch to a small pool of worker processes, and a worker that runs past
`TIME_LIMIT_S` on one check is killed and replaced; that check returns None (unverifiable) and is
counted in `TIMEOUTS`. Nothing raises, from any thread, under `accelerate launch` (one pool per
process) and inside TRL's reward call.

The pool is pebble's `ProcessPool` (a kept library whose tasks take a timeout, and which kills and
replaces a worker that overruns; `concurrent.futures` can only abandon such a worker). Workers come
from multiprocessing's forkserver: a small process started fresh, with the verifiers imported, from
which each worker, and each replacement for one killed at the limit, is forked (each worker then
imports the caller's main script, as a spawned process does). A worker forked from the training
process itself would hold a copy-on-write snapshot of its heap, and every page the process then
writes (weights, optimizer state) would be copied: a Qwen2.5-0.5B run whose pool first started
after its optimizer state was loaded held gigabytes more than it used and was killed by the OOM
killer (docs/real-models.md). A check must be importable by name (a module-level function; the caller's
main script counts), and a script that checks answers needs Python's `if __name__ == "__main__":`
guard, since the workers import it.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Sequence

from pebble import ProcessPool

TIME_LIMIT_S = 1.0  # wall seconds one check may run in a worker before the worker is killed
WORKERS = max(1, min(4, os.cpu_count() or 1))  # a check is short; a few workers keep a batch moving
TIMEOUTS = {"count": 0}  # checks that ran out of time in this process (each returned None)
FAILURES = {"count": 0}  # checks that raised or crashed their worker in this process (each returned None)

_lock = threading.Lock()
_pool = None
_pool_pid = None


def warm_up() -> None:
    """One benign check as each worker starts, before it takes a task (pebble's initializer runs
    before the worker's first task is timed), so a check's limit never pays for loading
    math-verify's parsers and sympy's caches (a cold first check's cost: docs/reliability-and-speed.md)."""
    from rlsft.scoring.verify import verify_answer  # math-verify and sympy: loaded in the worker

    verify_answer("\\boxed{\\frac{a^2}{2}+b=1}", "a^2/2+b=1")  # LaTeX and plain forms, fractions, powers, an equation


def _get_pool():
    """This process's pool, started on first use (a forked child starts its own), its workers
    forked from the forkserver and warmed (`warm_up`) before their first task."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["rlsft.scoring.verify"])  # imported once in the server, shared by every worker
            _pool, _pool_pid = ProcessPool(max_workers=WORKERS, context=context, initializer=warm_up), os.getpid()
        return _pool


def close() -> None:
    """Stop the workers (at exit, or to free them)."""
    global _pool
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.stop()
            _pool.join()
        _pool = None


atexit.register(close)


def check_many(check: Callable[..., bool | None], args: Sequence[tuple], timeout: float = TIME_LIMIT_S) -> list[bool | None]:
    """`check(*a)` for each `a` in `args`, in the worker processes, in order. A check that runs past
    `timeout` seconds or fails gives None. `check` must be picklable (a module-level function).

    >>> from rlsft.scoring.verify import verify_answer
    >>> check_many(verify_answer, [("<answer>4</answer>", "4"), ("<answer>5</answer>", "4")])
    [True, False]
    """
    if not args:
        return []
    futures = [_get_pool().schedule(check, args=a, timeout=timeout) for a in args]
    out: list[bool | None] = []
    for f in futures:
        try:
            out.append(f.result())
        except FutureTimeout:
            TIMEOUTS["count"] += 1
            out.append(None)
        except Exception:  # a check that raised or crashed its worker: unverifiable, never a reward
            FAILURES["count"] += 1
            out.append(None)
    return out
