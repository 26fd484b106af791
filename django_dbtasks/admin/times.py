"""Every time in the admin with its seconds, and its full precision on hover.

Django shows a ``DateTimeField`` in the project's ``DATETIME_FORMAT``, to the
minute by default ("Dec. 2, 2026, 6:28 p.m."): two failures a few seconds
apart read alike. ``TimesWithSeconds`` swaps each date-time field a list
column or a read-only field names for one that shows it with seconds
(``display.moment`` in lists, ``display.moment_long`` on pages), the time
to the microsecond with its time zone in the tooltip. The column keeps the
field's name, label, CSS class and sorting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.http import HttpRequest
from django.utils.safestring import SafeString

from . import display

Shown = Callable[[Any], SafeString | str]


#: The columns made so far, per model, field and way of showing.
_COLUMNS: dict[tuple[str, str, str], Shown] = {}


class TimesWithSeconds:
    """A ``ModelAdmin`` mixin: date-time columns and read-only fields shown with seconds."""

    model: Any

    def get_list_display(self, request: HttpRequest) -> Any:
        names = super().get_list_display(request)  # type: ignore[misc]
        return [self._shown(name, display.moment) for name in names]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        names = super().get_readonly_fields(request, obj)  # type: ignore[misc]
        return [self._shown(name, display.moment_long) for name in names]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The fieldsets, each read-only date-time field swapped as ``get_readonly_fields`` does."""
        readonly = set(self.get_readonly_fields(request, obj))
        return [
            (
                title,
                {
                    **options,
                    "fields": [self._swapped(name, readonly) for name in options.get("fields", ())],
                },
            )
            for title, options in super().get_fieldsets(request, obj)  # type: ignore[misc]
        ]

    def _swapped(self, name: Any, readonly: set[Any]) -> Any:
        shown = self._shown(name, display.moment_long)
        return shown if shown in readonly else name

    def _shown(self, name: Any, how: Shown) -> Any:
        """The column that shows field ``name`` with ``how``; anything else as it is."""
        if not isinstance(name, str):
            return name
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        if not isinstance(field, models.DateTimeField):
            return name
        key = (self.model._meta.label, name, how.__name__)
        if key not in _COLUMNS:  # one function per field, so lists of them compare equal
            _COLUMNS[key] = _column(name, str(field.verbose_name), how)
        return _COLUMNS[key]


def _column(name: str, label: str, how: Shown) -> Shown:
    """A display function for field ``name``: named after it, so its CSS class stays."""

    @admin.display(description=label, ordering=name)
    def column(obj: Any) -> SafeString | str:
        return how(getattr(obj, name))

    column.__name__ = column.__qualname__ = name
    return column
