"""Answer checking in worker processes: bounded in wall time, from any thread, no timer or signal
handler in the calling process, nothing leaking out."""

import os
import signal
import threading
import time

from test_verify import ADVERSARIAL

from rlsft.scoring import pool
from rlsft.scoring.tasks import get_task
from rlsft.scoring.verify import verify_answer


def sleep_then_true(completion: str, gold: str) -> bool:
    """A check that overruns any limit (a stand-in for sympy stuck in C code)."""
    time.sleep(30)
    return True


def test_an_overrunning_check_is_killed_and_returns_none():
    before = pool.TIMEOUTS["count"]
    assert pool.check_many(sleep_then_true, [("a", "b")], timeout=0.5) == [None]
    assert pool.TIMEOUTS["count"] == before + 1
    assert pool.check_many(verify_answer, [("<answer>4</answer>", "4")]) == [True]  # the worker was replaced


def raise_value_error(completion: str, gold: str) -> bool:
    """A check with a bug: it raises."""
    raise ValueError(completion)


def test_a_check_that_raises_returns_none_and_is_counted_apart_from_timeouts():
    failures, timeouts = pool.FAILURES["count"], pool.TIMEOUTS["count"]
    assert pool.check_many(raise_value_error, [("a", "b"), ("c", "d")]) == [None, None]
    assert (pool.FAILURES["count"], pool.TIMEOUTS["count"]) == (failures + 2, timeouts)


def test_a_power_tower_from_another_thread():
    out = []
    thread = threading.Thread(target=lambda: out.extend(get_task("math500").verify_many(["<answer>10^{10^{10^{10}}}</answer>"], ["10"])))
    thread.start()
    thread.join(timeout=60)  # a safety net for a hung test, not a benchmark
    assert not thread.is_alive() and out in ([False], [None])


def test_the_adversarial_set_fifty_times_with_nothing_leaking():
    completions = [f"<answer>{a}</answer>" for a in ADVERSARIAL] * 50
    results = get_task("gsm8k").verify_many(completions, ["19"] * len(completions))
    assert len(results) == len(completions) and set(results) <= {True, False, None}
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)  # no handler installed here
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # and no timer running


def parent_pid() -> int:
    """The pid of the process a worker was forked from."""
    return os.getppid()


def test_workers_are_not_forked_from_the_caller():
    """A worker forked from the caller would hold a copy-on-write snapshot of its heap (a model,
    its optimizer state) and copy every page the caller writes afterwards."""
    for _ in range(2):  # the first worker, then a replacement for one killed on its time limit
        (ppid,) = pool.check_many(parent_pid, [()])
        assert isinstance(ppid, int) and ppid != os.getpid()
        assert pool.check_many(sleep_then_true, [("a", "b")], timeout=0.5) == [None]
