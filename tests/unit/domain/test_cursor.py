"""Cursor rules: never backwards, never past the signpost, no row ever skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.domain.cursor import (
    Cursor,
    FeedOrderError,
    RecentRows,
    Row,
    advance,
    clamp_to_clock,
    initial,
    poll_window,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_window_starts_overlap_before_cursor_and_ends_at_signpost() -> None:
    start, end = poll_window(Cursor(at(100), "a"), signpost=at(200), overlap_s=30)
    assert (start, end) == (at(70), at(200))


def test_window_never_starts_after_its_end() -> None:
    start, end = poll_window(Cursor(at(500)), signpost=at(200), overlap_s=0)
    assert start <= end == at(200)


def test_a_cursor_within_its_clocks_is_kept() -> None:
    c = Cursor(at(100), "a")
    assert clamp_to_clock(c, saved_at=at(100), now=at(500)) is c
    # a Salesforce signpost is the next whole second: up to a second past the save is normal
    assert clamp_to_clock(Cursor(at(101)), saved_at=at(100.2), now=at(500)).position == at(101)


def test_a_cursor_ahead_of_its_save_time_reads_from_the_save_time() -> None:
    ahead = Cursor(at(86_400 * 365), "a")
    assert clamp_to_clock(ahead, saved_at=at(100), now=at(500)) == Cursor(at(100))


def test_a_cursor_ahead_of_the_clock_reads_from_now() -> None:
    # saved by a clock that ran a year fast, read by one that was put right
    ahead = Cursor(at(86_400 * 365))
    assert clamp_to_clock(ahead, saved_at=at(86_400 * 365), now=at(500)) == Cursor(at(500))
    assert clamp_to_clock(ahead, saved_at=None, now=at(500)) == Cursor(at(500))


def test_advance_moves_to_newest_row_and_keeps_tie_break() -> None:
    rows = [Row("b", at(10)), Row("a", at(20)), Row("c", at(20))]
    assert advance(initial(T0), rows, signpost=at(60)) == Cursor(at(20), "c")


def test_advance_without_rows_stays_put() -> None:
    assert advance(Cursor(at(5), "x"), [], signpost=at(60)) == Cursor(at(5), "x")


def test_advance_caps_at_signpost() -> None:
    assert advance(initial(T0), [Row("z", at(90))], signpost=at(60)).position == at(60)


def test_unsorted_feed_is_refused() -> None:
    with pytest.raises(FeedOrderError, match="went backwards"):
        advance(initial(T0), [Row("a", at(20)), Row("b", at(10))], signpost=at(60))


def test_naive_position_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Cursor(datetime(2026, 1, 1))


def test_recent_rows_skip_exact_rereads_but_not_new_stamps() -> None:
    seen = RecentRows().remember([Row("a", at(10))], cursor=Cursor(at(10)), overlap_s=60)
    fresh = seen.fresh([Row("a", at(10)), Row("a", at(11)), Row("b", at(10))])
    assert fresh == [Row("a", at(11)), Row("b", at(10))]


def test_recent_rows_same_instant_other_offset_is_a_reread() -> None:
    seen = RecentRows().remember([Row("a", at(10))], cursor=Cursor(at(10)), overlap_s=60)
    other_zone = at(10).astimezone(timezone(timedelta(hours=-4)))
    assert seen.fresh([Row("a", other_zone)]) == []


def test_recent_rows_do_not_remember_rows_of_the_unsettled_second() -> None:
    """A row stamped in the poll's own second may change again with the same stamp."""
    seen = RecentRows().remember(
        [Row("a", at(10)), Row("b", at(9))],
        cursor=Cursor(at(10)),
        overlap_s=60,
        settled_before=at(10),
    )
    assert seen.fresh([Row("a", at(10)), Row("b", at(9))]) == [Row("a", at(10))]


def test_recent_rows_forget_what_left_the_window() -> None:
    seen = RecentRows().remember([Row("a", at(10))], cursor=Cursor(at(10)), overlap_s=60)
    later = seen.remember([Row("b", at(200))], cursor=Cursor(at(200)), overlap_s=60)
    assert later.seen == (("b", at(200).isoformat()),)


stamps = st.integers(min_value=0, max_value=40)  # few values: many rows share a timestamp


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=40),
    stamps_=st.lists(stamps, max_size=30),
    signpost=st.integers(min_value=0, max_value=60),
)
def test_advance_never_backwards_never_past_signpost(
    start: int, stamps_: list[int], signpost: int
) -> None:
    cursor = Cursor(at(start), None)
    rows = [Row(f"r{i:03d}", at(s)) for i, s in enumerate(sorted(stamps_))]
    new = advance(cursor, rows, signpost=at(signpost))
    assert new.position >= cursor.position
    assert new.position <= max(cursor.position, at(signpost))


@st.composite
def feeds(draw: st.DrawFn) -> tuple[list[tuple[str, int, int]], list[int], int]:
    """Rows (id, stamp, commit time >= stamp, lag <= overlap), poll times, overlap."""
    overlap = draw(st.integers(min_value=0, max_value=10))
    n = draw(st.integers(min_value=0, max_value=25))
    rows = []
    for i in range(n):
        stamp = draw(st.integers(min_value=0, max_value=30))
        lag = draw(st.integers(min_value=0, max_value=overlap))
        rows.append((f"r{i:03d}", stamp, stamp + lag))
    polls = sorted(draw(st.lists(st.integers(min_value=0, max_value=45), max_size=8)))
    return rows, polls, overlap


@settings(max_examples=300, deadline=None)
@given(feeds())
def test_no_row_is_ever_skipped(feed: tuple[list[tuple[str, int, int]], list[int], int]) -> None:
    """Rows sharing a timestamp and rows committing late are all read by some poll.

    A poll at time P sees rows committed by P, with `start <= stamp < P`, sorted by
    (stamp, id); the final poll runs after every commit. With `RecentRows`, each row is queued
    at least once, and never twice for the same (id, stamp).
    """
    rows, polls, overlap = feed
    cursor = initial(at(-1))
    recent = RecentRows()
    queued: list[str] = []
    for poll_at in [*polls, 100]:
        start, end = poll_window(cursor, signpost=at(poll_at), overlap_s=overlap)
        visible = sorted(
            (Row(rid, at(stamp)) for rid, stamp, commit in rows if commit <= poll_at),
            key=lambda r: (r.at, r.id),
        )
        page = [r for r in visible if start <= r.at < end]
        fresh = recent.fresh(page)
        queued.extend(r.id for r in fresh)
        cursor = advance(cursor, page, signpost=end)
        recent = recent.remember(page, cursor=cursor, overlap_s=overlap)
    assert sorted(set(queued)) == sorted(rid for rid, _, _ in rows)
    assert len(queued) == len(set(queued))


def test_a_burst_over_the_memory_is_queued_once_not_on_every_poll() -> None:
    """More rows inside the overlap than RecentRows remembers (a backfill writing tens of
    thousands of records in minutes): once the poll has read its window, the rows it cannot
    hold one by one are covered by its floor, so re-reading the same quiet window finds nothing
    fresh, poll after poll. Before the floor, the forgotten rows were queued again on every
    poll (a 50,000-prospect backfill never settled)."""
    burst = [Row(f"r{n:04d}", at(n // 10)) for n in range(300)]  # 30 seconds, 10 rows each
    cursor = advance(initial(T0), burst, signpost=at(60))
    recent = RecentRows().remember(burst, cursor=cursor, overlap_s=60, max_rows=100).complete()
    assert len(recent.seen) <= 100 and recent.floor == at(19).isoformat()
    for _ in range(3):  # quiet polls re-read the same window
        assert recent.fresh(burst) == []
        recent = recent.remember(burst, cursor=cursor, overlap_s=60, max_rows=100).complete()
    late = Row("new", at(29))  # a real change after the floor is still fresh
    assert recent.fresh([*burst, late]) == [late]
    # the next window starts at the floor: the rows before it are not read again
    start, _ = poll_window(cursor, signpost=at(60), overlap_s=60)
    assert start < recent.read_from(start) == at(19)


def test_the_floor_is_forgotten_once_the_window_has_passed_it() -> None:
    burst = [Row(f"r{n:04d}", at(n // 10)) for n in range(300)]
    cursor = advance(initial(T0), burst, signpost=at(60))
    recent = RecentRows().remember(burst, cursor=cursor, overlap_s=60, max_rows=100).complete()
    assert recent.floor is not None
    later = Cursor(at(500))
    recent = recent.remember([Row("x", at(499))], cursor=later, overlap_s=60, max_rows=100)
    assert recent.floor is None and recent.seen == (("x", at(499).isoformat()),)
    start, _ = poll_window(later, signpost=at(600), overlap_s=60)
    assert recent.read_from(start) == start


def test_a_second_still_being_read_is_never_taken_for_seen() -> None:
    """A bulk load stamps thousands of rows with one second, over many pages. The memory stays
    bounded (the second is folded), but until the poll has read to its end no row of it is
    taken for seen: the next pages are queued (a 50,000-prospect run once stopped at 30,528)."""
    page1 = [Row(f"a{n:04d}", at(5)) for n in range(150)]
    page2 = [Row(f"b{n:04d}", at(5)) for n in range(150)]
    cursor = advance(initial(T0), [*page1, *page2], signpost=at(60))
    recent = RecentRows().remember(page1, cursor=cursor, overlap_s=60, max_rows=100)
    assert len(recent.seen) <= 100 and recent.next_floor == at(5).isoformat()
    assert recent.fresh(page2) == page2  # same poll: the next page is new
    recent = recent.remember(page2, cursor=cursor, overlap_s=60, max_rows=100).complete()
    assert recent.fresh([*page1, *page2]) == []  # next poll: the whole second was read
    assert recent.fresh([Row("c", at(6))]) == [Row("c", at(6))]
