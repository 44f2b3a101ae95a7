"""pgusers' users in the Django admin: listed and searchable, never changed there
(pgusers' own rules apply to every change: the console, the CLI or the API)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from pgusers.integrations.django.models import User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ("userid", "username", "email", "admin", "disabled", "created_at")
    list_filter = ("admin", "disabled", "email_verified")
    search_fields = ("username", "email")
    fields = (*list_display, "email_verified", "extra_data")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
