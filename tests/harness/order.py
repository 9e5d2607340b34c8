"""The order the tests run in: files of slow tests first.

pytest-xdist's ``--dist loadfile`` hands whole files to its workers in collection order,
and a long file handed out last would keep one worker running alone while the other
idles; so the files whose tests are all marked ``slow`` go first, then those with some
slow tests, then the rest (each group in collection order, each file's tests together).
"""

from __future__ import annotations

import collections


def slow_files_first(items: list) -> None:
    """Sort pytest ``items`` (anything with ``path`` and ``get_closest_marker``) in place."""
    marked = collections.Counter(it.path for it in items if it.get_closest_marker("slow"))
    total = collections.Counter(it.path for it in items)
    items.sort(key=lambda it: 0 if marked[it.path] == total[it.path] else
               1 if marked[it.path] else 2)
