"""A simple wall-clock timer for profiling training and testing loops."""

import time


class Timer:
    """Accumulates the durations of ``tic()`` / ``toc()`` intervals.

    Attributes: ``total_time`` (seconds over all intervals), ``calls`` (number of intervals),
    ``average_time`` (``total_time / calls``), ``diff`` (the last interval).
    """

    def __init__(self):
        self.total_time = 0.0
        self.calls = 0
        self.start_time = 0.0
        self.diff = 0.0
        self.average_time = 0.0

    def tic(self):
        """Start an interval."""
        # perf_counter is monotonic: wall-clock adjustments cannot yield negative intervals.
        self.start_time = time.perf_counter()

    def toc(self, average=True):
        """End the interval started by the last ``tic()``.

        Returns the running average over all intervals when ``average`` is true, else the last interval.
        """
        self.add(time.perf_counter() - self.start_time)
        return self.average_time if average else self.diff

    def add(self, seconds):
        """Record an interval of ``seconds`` measured elsewhere (e.g. from an engine's own profile)."""
        self.diff = seconds
        self.total_time += seconds
        self.calls += 1
        self.average_time = self.total_time / self.calls


def format_eta(seconds):
    """``h:mm:ss`` for a duration in seconds."""
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'
