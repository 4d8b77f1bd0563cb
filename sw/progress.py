"""Training progress on stderr: a bar with the running loss and images/s on a terminal, one
line per epoch otherwise (logs, CI)."""
from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    """A small progress bar: ``\\r`` updates on a terminal, one line per epoch otherwise.

    Parameters
    ----------
    enabled : bool
        Show anything at all (only the main rank does).
    stream : text stream
        Default ``sys.stderr``; the bar is drawn only when it is a terminal.
    """

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def step(self, epoch: int, epochs: int, i: int, n: int, loss: float, ips: float) -> None:
        """Redraw the bar after step ``i`` of ``n`` (at most every 0.1 s; terminals only)."""
        if not self.tty:
            return
        now = time.monotonic()
        if i < n and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        done = int(width * i / n)
        bar = "#" * done + "-" * (width - done)
        self.stream.write(f"\repoch {epoch:>3}/{epochs} [{bar}] {i:>4}/{n} "
                          f"loss {loss:7.4f}  {ips:7.1f} img/s ")
        self.stream.flush()

    def epoch(self, text: str) -> None:
        """Replace the bar by an epoch's summary line."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
