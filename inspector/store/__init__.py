"""The results store: SQLAlchemy schema, versioned migrations, SQLite (WAL) or PostgreSQL."""

from inspector.store.records import (
    EventRecord,
    InspectionRecord,
    ModelRecord,
    ReviewRecord,
    StationRecord,
    ThresholdRecord,
    ToleranceRecord,
    VerdictCounts,
)
from inspector.store.store import Store, open_store, resolve_url

__all__ = [
    "EventRecord",
    "InspectionRecord",
    "ModelRecord",
    "ReviewRecord",
    "StationRecord",
    "Store",
    "ThresholdRecord",
    "ToleranceRecord",
    "VerdictCounts",
    "open_store",
    "resolve_url",
]
