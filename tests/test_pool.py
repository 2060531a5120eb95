"""The device pool's work queue: re-queued chunks reach a device that had already run out of work (issue 11)."""

from __future__ import annotations

import threading

from scbp_edge.remote.pool import _Queue


def _take_in_thread(q: _Queue) -> tuple[threading.Thread, dict]:
    got: dict = {}
    t = threading.Thread(target=lambda: got.__setitem__("chunk", q.take()), daemon=True)
    t.start()
    return t, got


def test_an_idle_device_waits_and_takes_the_chunk_a_dropped_device_gave_back():
    q = _Queue([["a1", "a2"], ["b1"]])
    on_b = q.take()   # device B takes the first chunk
    q.take()          # device A the second ...
    q.done()          # ... and finishes it: nothing waits, but B's chunk is still in flight
    waiting = threading.Event()  # set once the taker really blocks on the queue (no sleep decides it)
    real_wait = q.cond.wait
    q.cond.wait = lambda timeout=None: (waiting.set(), real_wait(timeout))[1]
    t, got = _take_in_thread(q)
    assert waiting.wait(5) and t.is_alive(), f"device A left while a chunk could still come back: {got}"
    q.done(requeue=on_b)  # B drops out after A went idle: its chunk goes back in the queue
    q.drop("ssh://b", "lost during a measurement")
    t.join(5)
    assert got["chunk"] == ["a1", "a2"] and q.dropped == {"ssh://b": "lost during a measurement"}
    q.done()
    assert q.take() is None  # all done: every device's loop ends


def test_every_waiting_device_ends_when_the_last_chunk_finishes():
    q = _Queue([["x"]])
    q.take()
    waiters = [_take_in_thread(q) for _ in range(3)]
    q.done()
    for t, got in waiters:
        t.join(5)
        assert not t.is_alive() and got["chunk"] is None
