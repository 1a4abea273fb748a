"""The learned tolerance a one-off command applies: `inspector inspect --db` and `inspector evaluate --db`
judge boards as the runner of that store does (the runner itself follows new versions, processor.py)."""

from __future__ import annotations

from inspector.core.engine import Inspector
from inspector.core.tolerance import LearnedTolerance
from inspector.store import Store


def use_learned_tolerance(engine: Inspector, db: str) -> str:
    """Apply the newest learned tolerance of the engine's model from the store at `db` (URL or data
    directory); says what was applied."""
    with Store.open(db) as store:
        record = store.current_tolerance(engine.model_hash, with_maps=True)
    if record is None:
        return f"no learned tolerance for model {engine.model_hash[:12]} in the store: the bundle's own"
    engine.set_tolerance(LearnedTolerance.stored(record.factor, record.version))
    return f"learned tolerance version {record.version} ({record.reason}, by {record.author})"
