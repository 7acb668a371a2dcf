"""Turn skopeo's per-blob output into BitBake task progress."""

from __future__ import annotations

import bb.progress


class SkopeoCopyProgress(bb.progress.LineFilterProgressHandler):
    """Counts `Copying blob`/`Copying config` lines against the number of blobs to copy."""

    def __init__(self, d: object, total_blobs: int) -> None:
        super().__init__(d)
        self._total = max(total_blobs, 1)
        self._started = 0
        self.lines: list[str] = []
        self._fire_progress(0)

    def output(self) -> str:
        """What skopeo printed (for classifying a failure: with a log, the error carries none)."""
        return "".join(self.lines[-50:])

    def writeline(self, line: str) -> bool:
        self.lines.append(line)
        if line.startswith(("Copying blob", "Copying config")):
            self._started += 1
            self.update(min(99, 100 * self._started // self._total))
        return True
