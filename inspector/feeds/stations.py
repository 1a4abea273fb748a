"""One data directory, one station, one feed: what `watch` and `camera` check when they start.

The data directory remembers the station it belongs to (`station` file): the verdicts waiting in its
outbox are that station's, and only a feed under that name publishes them. The store remembers where
each station keeps its images and refuses a second live feed under the same name (StationsMixin).
Both checks run after the data directory's lock is taken (inbox.exclusive_lock), so of two feeds
started on one data directory the second is refused by the lock, and of two on one store under one
name the second is refused here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from inspector.atomic import NotDurable, atomic_write_text
from inspector.errors import ConfigError, StoreError
from inspector.store import StationRecord, Store

log = logging.getLogger(__name__)

STATION_FILE = "station"


def claim_station(store: Store, data_dir: Path, station: str, feed: str) -> StationRecord:
    """Bind `data_dir` to `station` (first start) or check it is bound to it, then take the station in
    the store for this feed; ConfigError with the way out otherwise."""
    marker = Path(data_dir) / STATION_FILE
    owner = marker.read_text(encoding="utf-8", errors="replace").strip() if marker.is_file() else ""
    if owner and owner != station:
        raise ConfigError(f"{data_dir} is the data directory of station {owner!r}: start this feed with "
                          f"--station {owner}, or give station {station!r} a data directory of its own")
    try:
        claimed = store.claim_station(station, data_dir=str(Path(data_dir).resolve()), feed=feed)
    except StoreError as exc:
        if "second feed" in str(exc):
            raise ConfigError(str(exc)) from exc
        raise
    if not owner:  # bound only once the store agreed: a refused start leaves the directory free
        try:
            atomic_write_text(marker, station + "\n", durable=True)
        except NotDurable as exc:  # written: the binding holds on this run
            log.error("%s", exc)
        except OSError as exc:
            raise ConfigError(f"{marker}: cannot record the data directory's station ({exc.strerror or exc}); "
                              "check the disk") from exc
    return claimed
