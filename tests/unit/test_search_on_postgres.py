"""The search tests again, on PostgreSQL (its GIN index over ``to_tsvector('simple',
body)`` and its tsquery building), in a throwaway database of their own as
test_on_postgres.py runs its modules. Marked ``scale``: it needs the machine's
PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import pytest
from postgres_rerun import rerun_on_postgresql

pytestmark = pytest.mark.scale


@pytest.mark.timeout(300)
def test_search_holds_on_postgresql():
    rerun_on_postgresql("search", ["test_search.py"])
