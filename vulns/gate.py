"""The gate: which findings fail an audit (`--fail-on`, or `[vulnerabilities]` in the policy)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .findings import Finding
from .severity import LEVELS, UNKNOWN, rank

FAIL_LEVELS = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Gate:
    """Fail on findings at `fail_on` or above; `ignore_unfixed`: not those without a fixed version;
    `fail_on_unknown`: a finding of unknown severity fails too."""

    fail_on: str | None = None
    ignore_unfixed: bool = False
    fail_on_unknown: bool = False

    def fails(self, finding: Finding) -> bool:
        """Does this finding fail the gate? Never when triaged not_affected / false_positive / resolved."""
        if self.fail_on is None or (finding.analysis is not None and finding.analysis.suppresses):
            return False
        if self.ignore_unfixed and finding.fixed is None:
            return False
        if finding.severity == UNKNOWN:
            return self.fail_on_unknown
        return rank(finding.severity) >= LEVELS.index(self.fail_on)

    def failing(self, findings: Iterable[Finding]) -> list[Finding]:
        return [f for f in findings if self.fails(f)]
