"""The admin at scale (issue 11 part 5): changelists that stay fast on a log of millions.

A stock changelist costs, on every page load, a ``COUNT(*)`` of its filtered queryset (the
paginator's), another of the whole table (``show_full_result_count``), a ``LIKE '%x%'``
walk of every row per search field, and a sidebar that lists every row of a related
table per foreign-key filter. On 1M messages over 10k rooms each of those is a full walk
of a big table or a page of 10k links. What this module gives instead:

- ``EstimatedCountPaginator``: no count of the whole table. Unfiltered, the count is the
  database's own estimate (PostgreSQL's ``pg_class.reltuples``; SQLite's largest rowid,
  read off the table's b-tree); filtered, rows are counted no further than the pages the
  user can reach from here (``SELECT COUNT(*) FROM (SELECT ... LIMIT cap)``: ten pages
  past the one shown, at least ``COUNT_CAP``), so a count costs what browsing that deep
  would, not a walk of every matching row. A filter no index answers (deleted ones)
  stops after ``COUNT_CAP`` matches instead of reading to the table's end.
- ``TextFilter``: a filter by a typed value (a room's slug, a username) instead of a list
  of every related row; it filters by an exact lookup that an index answers.
- ``ScaleAdminMixin``: both, ``show_full_result_count = False`` and no facet counts
  ("Show counts" would count every filter choice over the whole table).

For the other changelists over big tables (``Upload``, ``ModerationAction``, in
chat/admin/upload_admin.py and moderation_admin.py)::

    from chat.admin.scale import ScaleAdminMixin, TextFilter

    class RoomSlugFilter(TextFilter):
        title = "room"
        parameter_name = "room"
        lookup = "room__slug"          # exact; the unique slug index finds the room

    @admin.register(Upload)
    class UploadAdmin(ScaleAdminMixin, admin.ModelAdmin):
        list_filter = (RoomSlugFilter,)
        ordering = ("-created_at",)     # an indexed order: the page is an index walk
        search_fields = ("=name",)      # "=" is exact, "^" a prefix: no '%x%' walk

Put the mixin first (its ``paginator`` and ``show_full_result_count`` must win). Keep
``ordering`` on an indexed column and ``list_select_related`` for the shown foreign keys;
the test of the message changelist (tests/unit/test_admin_scale.py,
``unbounded_counts``) can be pointed at another model's changelist URL as well.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

# Filtered changelists count at least this many rows (more only when browsing deeper):
# on 1M messages a filter no index answers found 1,000 matches in ~25 ms of walking on
# SQLite where 10,000 took ~280 ms (bench/admin_scale.py).
COUNT_CAP = 1000
# How many pages past the one shown the count reaches (the page links' reach).
PAGES_AHEAD = 10


def estimated_rows(model, cap: int = COUNT_CAP) -> int:
    """About how many rows ``model``'s table has, without reading them: PostgreSQL's
    planner statistic (kept by ANALYZE and autovacuum); SQLite's largest rowid (one step
    down the table's b-tree; every SQLite table Django makes has a rowid, whatever its
    primary key). A PostgreSQL table never analyzed (reltuples -1) is estimated by its
    largest integer primary key, or counted up to ``cap``."""
    table = model._meta.db_table
    connection = connections[model.objects.db]
    quoted = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"SELECT MAX(rowid) FROM {quoted}")
            return int(cursor.fetchone()[0] or 0)
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table]
            )
            row = cursor.fetchone()
            if row is not None and row[0] is not None and row[0] >= 0:
                return int(row[0])
        pk = model._meta.pk
        if pk.get_internal_type() in ("AutoField", "BigAutoField", "SmallAutoField"):
            cursor.execute(f"SELECT MAX({connection.ops.quote_name(pk.column)}) FROM {quoted}")
            return int(cursor.fetchone()[0] or 0)
    # A table keyed otherwise (an upload's random id): counted up to the cap.
    return bounded_count(model._default_manager.all(), cap)


def bounded_count(queryset: QuerySet, cap: int = COUNT_CAP) -> int:
    """How many rows ``queryset`` has, counting no further than ``cap`` (Django turns a
    sliced queryset's ``count()`` into ``COUNT(*)`` over a LIMIT-ed subquery)."""
    return queryset.order_by()[:cap].count()


def is_unfiltered(queryset: QuerySet) -> bool:
    return not queryset.query.where


class EstimatedCountPaginator(Paginator):
    """A paginator that never counts a whole big table (see the module's docstring).

    The count is an estimate or capped (at ``cap`` rows), so the last page may come out
    short; Django's changelist shows what the page holds, and the page links stay usable.
    """

    def __init__(self, object_list, per_page, *args, cap: int = COUNT_CAP, **kwargs) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.cap = cap

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet):
            if is_unfiltered(queryset):
                return estimated_rows(queryset.model, self.cap)
            return bounded_count(queryset, self.cap)
        return len(queryset)


class TextFilter(admin.ListFilter):
    """A changelist filter by a typed value: ``?<parameter_name>=<value>`` keeps the rows
    whose ``lookup`` equals it. Subclasses set ``title``, ``parameter_name``, ``lookup``
    (an exact lookup an index answers, e.g. ``room__slug``)."""

    template = "admin/chat/text_filter.html"
    parameter_name = ""
    lookup = ""
    max_length = 150

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        raw = params.pop(self.parameter_name, None)
        value = raw[-1] if isinstance(raw, list) else raw
        self.value = (value or "").strip()[: self.max_length]

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value:
            return queryset
        return queryset.filter(**{self.lookup: self.value})

    def choices(self, changelist):
        # The template draws a text box; "All" clears the value. The other parameters
        # of the page are kept as hidden fields so that a filter adds to the others.
        others = {
            key: value
            for key, value in changelist.get_filters_params().items()
            if key != self.parameter_name
        }
        yield {
            "selected": not self.value,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            "value": self.value,
            "parameter_name": self.parameter_name,
            "hidden": [(k, v[-1] if isinstance(v, list) else v) for k, v in others.items()],
            "search": changelist.query,
        }


class ScaleAdminMixin:
    """No full-table count on any changelist page: the estimating paginator (counting ten
    pages past the one asked for) and no "N total" count. Put it before
    ``admin.ModelAdmin`` in the bases."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # "Show counts" (Django 5's facets) counts every filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page = max(1, int(request.GET.get(PAGE_VAR, 1)))
        except ValueError:
            page = 1  # the changelist itself answers a bad page number
        cap = max(COUNT_CAP, (page + PAGES_AHEAD) * per_page)
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page, cap=cap)
