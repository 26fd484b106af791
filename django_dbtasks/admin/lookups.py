"""What a changelist's query string may ask: its declared filters' parameters, and no others.

Django's admin filters a list by any lookup on a local field given in the
query string (``?args__1__startswith=sk``), offered by a filter or not. On
tables that hold secrets shown redacted (the arguments of ``sensitive``
tasks), that is an oracle: each answer tells whether a guessed prefix is
right, and a secret comes back character by character. So the lists here
accept, as lookups, only the parameters of their ``list_filter`` entries and
the few their own links use (``linked_lookups``); Django answers any other
with 400 (``DisallowedModelAdminLookup``). Search (``q``), ordering (``o``),
pages (``p``) and the admin's own parameters (``_popup``, ``_facets``, ...)
are not lookups and keep working as in Django.

A value no text column can hold (a NUL character: PostgreSQL refuses it
with an error) gets the admin's own "invalid lookup" handling, as a value
the field cannot convert does: a redirect to the unfiltered list (``?e=1``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Field
from django.http import HttpRequest


def declared_lookups(model_admin: admin.ModelAdmin[Any], request: HttpRequest) -> set[str]:
    """The query-string parameters the list filters of ``model_admin`` read."""
    names: set[str] = set()
    entry: Any
    for entry in model_admin.get_list_filter(request):
        if isinstance(entry, type) and issubclass(entry, admin.SimpleListFilter):
            names.add(str(entry.parameter_name))
            continue
        field: Any
        filter_class: Any
        if isinstance(entry, list | tuple):
            field, filter_class = entry
        else:
            field, filter_class = entry, admin.FieldListFilter.create
        field_path = None
        if not isinstance(field, Field):
            field_path = field
            try:
                field = get_fields_from_path(model_admin.model, field_path)[-1]
            except FieldDoesNotExist:
                continue  # the system checks report it
        # Built with no parameters, a field filter reads nothing; it only names its parameters.
        spec = filter_class(
            field, request, {}, model_admin.model, model_admin, field_path=field_path
        )
        if spec is not None:
            names.update(str(name) for name in spec.expected_parameters())
    return names


class DeclaredLookupsOnly:
    """A ``ModelAdmin`` mixin: only the declared filters' lookups (and ``linked_lookups``).

    It also answers "doesn't exist" for two object URLs Django would fail on
    with a 500: an id holding a NUL character, and an empty ``?_to_field=``
    (Django then looks for a field named "").
    """

    #: Lookups the app's own links put in this list's URL, beyond its filters' parameters.
    linked_lookups: frozenset[str] = frozenset()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        """Allow the list filters' parameters and ``linked_lookups``; refuse every other lookup."""
        if lookup in self.linked_lookups:
            return True
        assert isinstance(self, admin.ModelAdmin) and request is not None
        return lookup in declared_lookups(self, request)

    def response_action(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, queryset: Any, *args: Any, **kwargs: Any
    ):
        """Django's, but a forged selection (a value no row's key can be) changes nothing.

        A selection comes from the list's checkboxes; one that is not a key
        of this model (text for a numeric id, an id out of the column's
        range, a NUL character) would otherwise reach the database as an
        error and a 500.
        """
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        assert isinstance(self, admin.ModelAdmin)
        if not all(_can_be_key(self.model._meta.pk, value) for value in selected):
            name = self.model._meta.verbose_name_plural
            self.message_user(
                request,
                f"The selection holds something that is not an id of {name}. "
                f"No {name} have been changed.",
                messages.ERROR,
            )
            return None  # Django redirects back to the list
        return super().response_action(request, queryset, *args, **kwargs)  # type: ignore[misc]

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        """Django's; an id no row can hold (a NUL character) is "doesn't exist"."""
        if "\x00" in object_id:
            return None
        # An empty ``_to_field`` passes Django's check (it is falsy): it means the primary key.
        return super().get_object(request, object_id, from_field or None)  # type: ignore[misc]


def _can_be_key(field: Any, value: str) -> bool:
    """Whether ``value`` can be the primary key of a row (without asking the database)."""
    if "\x00" in value:
        return False
    try:
        key = field.to_python(value)
    except ValidationError:
        return False
    return not isinstance(key, int) or -(2**63) <= key < 2**63


class CheckedChangeList(ChangeList):
    """A changelist that treats a lookup value holding a NUL character as an invalid lookup."""

    def get_filters(self, request: HttpRequest) -> Any:
        found = super().get_filters(request)  # refuses undeclared lookups first (400)
        for key, values in self.get_filters_params().items():
            if any("\x00" in value for value in values):
                raise IncorrectLookupParameters(f"{key}: null characters are not allowed.")
        return found
