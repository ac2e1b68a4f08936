"""`syncd status`'s recycle bin line: the count and the first few ids, never the whole list."""

from __future__ import annotations

import pytest

from syncd.commands.status import recycle_bin_line


@pytest.mark.parametrize(
    ("count", "ids", "line"),
    [
        (0, [], "Pardot recycle bin: no linked prospect (none skipped)"),
        (1, [9], "Pardot recycle bin: 1 linked prospect skipped until restored: 9"),
        (
            1200,
            list(range(1, 1001)),
            "Pardot recycle bin: 1200 linked prospects skipped until restored: "
            "1, 2, 3, 4, 5, ... (1195 more)",
        ),
    ],
)
def test_recycle_bin_line(count: int, ids: list[int], line: str) -> None:
    assert recycle_bin_line({"count": count, "prospect_ids": ids}) == line
