"""fan_out: results in order, the first error raised, no call started after it."""

from __future__ import annotations

import threading
import time

import pytest

from geotessera.store.fanout import fan_out


def test_results_come_in_item_order_whatever_finishes_first():
    assert fan_out(lambda i: time.sleep((5 - i) / 500) or i, list(range(6)), 3) == list(range(6))


def test_the_first_error_stops_the_calls_not_yet_started():
    started, lock = [], threading.Lock()

    def fn(i):
        with lock:
            started.append(i)
        if i == 0:
            raise OSError("item 0")
        time.sleep(0.01)
        return i

    with pytest.raises(OSError, match="item 0"):
        fan_out(fn, list(range(200)), 2)
    time.sleep(0.05)  # anything still queued would have started by now
    assert len(started) < 20, f"{len(started)} of 200 calls made after the first failed"


def test_the_first_error_in_item_order_is_the_one_raised():
    def fn(i):
        if i in (1, 3):
            time.sleep(0.02 if i == 1 else 0)
            raise ValueError(f"item {i}")
        return i

    with pytest.raises(ValueError, match="item 1"):
        fan_out(fn, [0, 1, 2, 3], 4)
