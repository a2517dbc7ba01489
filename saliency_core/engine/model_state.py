"""What the engine learns about a model, kept with the model and dropped with it.

Default CAM layers, the autograd bytes one point keeps alive, which of the faster guided paths
give its Guided Backprop exactly, the model's lock: each is worked out once per model and reused.
Keyed by ``id(model)`` such facts would outlive the model, and a new model that happened to
get the freed id would inherit a dead model's layer or memory estimate. Here they live in one
dictionary keyed weakly by the model itself (or by the forward callable, for models given as
plain functions), so they go when the model goes.
"""

from __future__ import annotations

import threading
import weakref

_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def model_state(owner) -> dict:
    """The facts kept for ``owner`` (an nn.Module or a forward callable): one dict per owner,
    created empty on first use. Each concern uses its own key in it."""
    with _guard:
        state = _states.get(owner)
        if state is None:
            state = _states[owner] = {}
        return state


def remembered(owner, concern: str, key, compute):
    """``compute()`` the first time ``(concern, key)`` is asked of ``owner``, the kept value
    after that. A computation that raises keeps nothing."""
    table = model_state(owner).setdefault(concern, {})
    if key not in table:
        table[key] = compute()
    return table[key]


def known_owners() -> int:
    """How many models have state kept (what tests use to see that dead models leave)."""
    return len(_states)
