"""Change-feed cursor rules: the poll window, and how far a cursor may advance after a poll.

A feed (Pardot prospects by `updatedAt`, Salesforce Leads/Contacts by `SystemModstamp`, sent
emails by `sentAt`) is read in windows `[cursor.position - overlap, signpost)`:

- The **signpost** is the time the poll started (singer-sdk's replication-key signpost). A row
  committed during the poll with a timestamp before the signpost but after the rows we read would
  be skipped forever if the cursor jumped to "now"; so the cursor never passes the signpost.
- The **overlap** re-reads the last `overlap_s` seconds before the cursor: rows that commit late
  (a long transaction stamps `SystemModstamp` at its start, not its commit) and rows sharing the
  cursor's timestamp are read again. Re-reading is harmless because the queue coalesces.
- The cursor only moves forward, and only to a timestamp actually seen (the newest row read,
  capped at the signpost). `last_id` is the tie-break: the id of the newest row at `position`.

`RecentRows` lets a poller tell a re-read row (same id, same timestamp as already queued) from a
genuinely new change inside the overlap, so the overlap costs reads but no reprocessing.

Everything here is pure: time comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a feed has been read up to.

    Attributes:
        position: the newest row timestamp read (aware datetime, UTC); never past a signpost.
        last_id: the id of the last row read at `position` (tie-break for rows sharing it).
    """

    position: datetime
    last_id: str | None = None

    def __post_init__(self) -> None:
        if self.position.tzinfo is None:
            raise ValueError("Cursor.position must be timezone-aware (UTC)")


@dataclass(frozen=True, slots=True)
class Row:
    """What the cursor needs of one row read from a feed: its id and its change timestamp."""

    id: str
    at: datetime


class FeedOrderError(ValueError):
    """A feed declared as sorted by timestamp returned rows out of order (a paging bug)."""


def initial(start_at: datetime) -> Cursor:
    """The cursor of a feed never read before: start at `start_at` (no id seen yet)."""
    return Cursor(position=start_at, last_id=None)


# A cursor may be up to one second past the clock that saved it: the Salesforce feeds read up to
# the NEXT whole second (SOQL literals have no fraction), so their signpost is `now` rounded up.
SIGNPOST_SLACK = timedelta(seconds=1)


def clamp_to_clock(cursor: Cursor, *, saved_at: datetime | None, now: datetime) -> Cursor:
    """The cursor to read from: `cursor` itself, unless it is ahead of every clock it could have
    been read by.

    A cursor only ever moves to a row timestamp capped at its poll's signpost, and the signpost
    is never past the save time (plus `SIGNPOST_SLACK`). A position beyond that (a database
    restored from another machine, a hand edit, a clock that was set a year ahead and then
    corrected) would give an empty poll window until the clock catches up: every change in
    between hidden. Such a cursor is pulled back to the earlier of its save time and `now`, and
    the overlap re-reads from there; re-reading is harmless, the queue coalesces.
    """
    limits = [now] if saved_at is None else [saved_at, now]
    trusted = min(limits)
    if cursor.position <= trusted + SIGNPOST_SLACK:
        return cursor
    return Cursor(position=trusted, last_id=None)


def poll_window(
    cursor: Cursor, *, signpost: datetime, overlap_s: float
) -> tuple[datetime, datetime]:
    """The window `[start, end)` to read: from the cursor minus the overlap up to the signpost.

    `end` is the signpost itself (exclusive). `start` never exceeds `end`: a cursor at (or, after
    a clock step backwards, beyond) the signpost yields an empty window that still re-reads
    nothing it should not.
    """
    if overlap_s < 0:
        raise ValueError("overlap_s must be >= 0")
    start = cursor.position - timedelta(seconds=overlap_s)
    return min(start, signpost), signpost


def advance(cursor: Cursor, rows: Iterable[Row], *, signpost: datetime) -> Cursor:
    """The cursor after reading `rows` (in feed order) in a poll that started at `signpost`.

    Rules: the position is the newest timestamp seen, never earlier than the current position
    (never backwards) and never later than the signpost (rows stamped during the poll are read
    by the next one). Rows must arrive in ascending `(at, id)` order within the poll; a row older
    than its predecessor raises `FeedOrderError` (singer-sdk's sortedness check), because a
    cursor computed from an unsorted feed can skip rows.
    """
    position = cursor.position
    last_id = cursor.last_id
    prev: Row | None = None
    for row in rows:
        if prev is not None and row.at < prev.at:
            raise FeedOrderError(
                f"feed went backwards: row {row.id} at {row.at.isoformat()} after row "
                f"{prev.id} at {prev.at.isoformat()}"
            )
        prev = row
        at = min(row.at, signpost)
        if at > position:
            position, last_id = at, row.id
        elif at == position and (last_id is None or row.id > last_id):
            last_id = row.id
    return Cursor(position=position, last_id=last_id)


@dataclass(frozen=True, slots=True)
class RecentRows:
    """Rows already queued whose timestamp is still inside the overlap window.

    A poller re-reads the overlap on every poll; a row with the same id and the same timestamp
    as one already queued is not a new change, so it is not queued again. A row that commits
    late (new id, or same id with a new timestamp) is. `seen` maps row id -> ISO timestamp.

    A burst holds more rows than `max_rows` (a backfill writes tens of thousands of records in
    minutes; a bulk load stamps hundreds of thousands with one second). The oldest whole
    timestamps are then not remembered one by one but folded into `next_floor`; once the poll
    has read its window to the end (`complete`), that becomes the `floor`: every row stamped at
    or before it counts as seen, and the next window starts there (`read_from`). Not before:
    the folded timestamp may still have unread rows on the next pages of this poll (the feed is
    sorted by timestamp only), and those must be queued. Without the floor the forgotten rows
    were queued again on EVERY poll for as long as the feed stayed quiet (the cursor does not
    move without new rows), a loop that kept a 50,000-prospect backfill busy long after its
    work was done; remembering every row of a bulk-loaded second instead grew without bound.
    The price: a row that commits later than a burst with a stamp at or before the floor is not
    seen, the same trade as a shorter overlap, and only after a burst.
    """

    seen: tuple[tuple[str, str], ...] = ()
    floor: str | None = None
    next_floor: str | None = None

    def fresh(self, rows: Iterable[Row]) -> list[Row]:
        """The rows of `rows` that are new changes (keeps order)."""
        known = set(self.seen)
        floor = self.floor
        return [
            r
            for r in rows
            if (r.id, stamp := _stamp(r.at)) not in known and (floor is None or stamp > floor)
        ]

    def read_from(self, start: datetime) -> datetime:
        """The window start `start`, moved up to `floor` (rows at or before it count as seen)."""
        if self.floor is None:
            return start
        return max(start, datetime.fromisoformat(self.floor))

    def complete(self) -> RecentRows:
        """After a poll read its whole window: what was folded this poll becomes the floor."""
        if self.next_floor is None:
            return self
        floor = self.next_floor if self.floor is None else max(self.floor, self.next_floor)
        return RecentRows(seen=tuple((i, a) for i, a in self.seen if a > floor), floor=floor)

    def remember(
        self,
        rows: Iterable[Row],
        *,
        cursor: Cursor,
        overlap_s: float,
        settled_before: datetime | None = None,
        max_rows: int = 20_000,
    ) -> RecentRows:
        """Add `rows` and forget rows older than the next poll's window start.

        `settled_before`: only rows stamped before it are remembered. Both APIs stamp whole
        seconds, so a row stamped in the second the poll ran can change again with the SAME
        stamp; such a row must be queued again when re-read, not taken for a re-read. Past
        `max_rows` the oldest timestamps are folded into `next_floor` (see the class doc).
        """
        # Stamps are UTC ISO strings of one spelling (`_stamp`), so they compare and sort as
        # strings: no parsing, and no sort unless the cap is exceeded (this runs per page).
        horizon = _stamp(cursor.position - timedelta(seconds=overlap_s))

        def live(mark: str | None) -> str | None:
            return mark if mark is not None and mark >= horizon else None

        floor, folded = live(self.floor), live(self.next_floor)
        merged: dict[str, str] = dict(self.seen)
        for row in rows:
            if settled_before is not None and row.at >= settled_before:
                merged.pop(row.id, None)
                continue
            merged[row.id] = _stamp(row.at)
        kept = [
            (rid, at)
            for rid, at in merged.items()
            if at >= horizon and (floor is None or at > floor)
        ]
        if len(kept) > max_rows:
            folded, kept = _fold_oldest(kept, folded, max_rows)
        return RecentRows(seen=tuple(kept), floor=floor, next_floor=folded)


def _fold_oldest(
    kept: list[tuple[str, str]], folded: str | None, max_rows: int
) -> tuple[str | None, list[tuple[str, str]]]:
    """Fold whole timestamps, oldest first, into `folded` until at most `max_rows` are left."""
    kept.sort(key=lambda item: (item[1], item[0]))
    cut = 0
    while len(kept) - cut > max_rows:
        at = kept[cut][1]
        while cut < len(kept) and kept[cut][1] == at:
            cut += 1
        folded = at if folded is None else max(folded, at)
    return folded, kept[cut:]


def _stamp(at: datetime) -> str:
    # One spelling per instant: Pardot answers with offsets (-04:00), Salesforce with +0000.
    return at.astimezone(UTC).isoformat()
