"""pgusers' users table in Django's migration state (unmanaged: Django creates no
table); running it opens the userspace, so pgusers creates or migrates its own
tables before any application migration adds a foreign key to them."""

from typing import Any, ClassVar

from django.db import migrations, models

from pgusers.integrations.django.models import table


def create_pgusers_tables(apps: Any, schema_editor: Any) -> None:
    from pgusers.integrations.django import userspace  # noqa: PLC0415

    userspace()


class Migration(migrations.Migration):
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.RunPython(create_pgusers_tables, migrations.RunPython.noop),
        migrations.CreateModel(
            name="User",
            fields=[
                ("userid", models.BigAutoField(primary_key=True, serialize=False)),
                ("username", models.TextField()),
                ("email", models.TextField()),
                ("admin", models.BooleanField(default=False)),
                ("disabled", models.BooleanField(default=False)),
                ("email_verified", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField()),
                ("extra_data", models.JSONField(null=True)),
                ("password_hash", models.TextField(editable=False)),
                ("generation", models.BigIntegerField(editable=False)),
            ],
            options={
                "managed": False,
                "db_table": table(),
                "verbose_name": "user",
                "ordering": ("userid",),
            },
        ),
    ]
