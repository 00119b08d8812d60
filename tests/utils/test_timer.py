"""Timer (utils.timer) on a fake clock."""

import types

from utils import timer as timer_module


def test_timer_accumulates_intervals(monkeypatch):
    ticks = iter([10.0, 10.5, 20.0, 21.5])
    monkeypatch.setattr(timer_module, 'time', types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    t = timer_module.Timer()
    t.tic()
    assert t.toc() == 0.5
    t.tic()
    assert t.toc(average=False) == 1.5
    assert t.calls == 2 and t.total_time == 2.0 and t.average_time == 1.0 and t.diff == 1.5
