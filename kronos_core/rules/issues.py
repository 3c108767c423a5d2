"""An ``Issue``: one broken rule, found in one input. The core raises it, the job quarantines it, serving
answers 422 with it: the same code, the same message, three reactions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Issue", "RuleError", "raise_first"]


@dataclass(frozen=True)
class Issue:
    """A rule an input breaks.

    Attributes:
        code: stable reason code (the batch job's ``reject_reason``), e.g. ``non_positive_price``.
        message: what is wrong and how to fix it, for a person.
        field: the input field at fault (``timestamps``, ``close``, ``frequency``, ...), if one is.
        row: the first offending row, if the rule is per row.
    """

    code: str
    message: str
    field: str | None = None
    row: int | None = None


class RuleError(ValueError):
    """A ``ValueError`` carrying the ``Issue`` that caused it (callers may read ``.issue``)."""

    def __init__(self, issue: Issue, who: str | None = None):
        super().__init__(f"{who}: {issue.message}" if who else issue.message)
        self.issue = issue


def raise_first(issues: Sequence[Issue], who: str | None = None) -> None:
    """Raise the first issue as a ``RuleError`` (nothing if there is none)."""
    if issues:
        raise RuleError(issues[0], who)
