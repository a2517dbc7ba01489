"""The engine: every model pass of every method, and what keeps shared models safe.

- ``stream``: the one hot path (chunks, device placement, out-of-memory retry, Stop, progress);
- ``locks``: fair per-model locks for models shared by many sessions;
- ``model_state``: per-model state, weakly keyed by the model itself;
- ``layers``: finding a model's layers and the spatial grid of their outputs.

Nothing here knows a method by name: methods call the engine, never the other way round.
"""
