"""The Django application of pgusers: ``"pgusers.integrations.django"`` in
``INSTALLED_APPS`` makes pgusers' users a model (label ``pgusers``, so
``"pgusers.User"`` in a ``ForeignKey``)."""

from django.apps import AppConfig


class PgUsersConfig(AppConfig):
    name = "pgusers.integrations.django"
    label = "pgusers"
    verbose_name = "pgusers"
    default_auto_field = "django.db.models.BigAutoField"
