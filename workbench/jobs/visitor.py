"""Who asks for model work: the ids the queue and the logs use, and the session's own store.

The pages build one per run from their Streamlit session (workbench.ui.session.visitor); the
jobs layer only reads and writes the mapping it is given, so it runs the same without
Streamlit (benchmarks, tests, another front end).
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Visitor:
    session: str  # an anonymous id for the browser session (logs, fairness)
    user: str | None = None  # the signed-in user, if any
    # The session's own storage: kept refiners, the best level before Stop, confirmations.
    state: MutableMapping[str, Any] = field(default_factory=dict)

    @property
    def requester(self) -> str:
        """Whom the rate limit counts: the user where signed in, else the session."""
        return self.user or self.session

    @classmethod
    def anonymous(cls) -> Visitor:
        return cls(uuid.uuid4().hex[:12])
