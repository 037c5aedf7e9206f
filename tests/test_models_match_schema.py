"""The unmanaged models and the SQL schema cannot drift apart."""

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import GeneratedField

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

# Django field type -> information_schema data_type
TYPES = {
    "BigAutoField": "bigint",
    "BigIntegerField": "bigint",
    "IntegerField": "integer",
    "SmallIntegerField": "smallint",
    "TextField": "text",
    "BooleanField": "boolean",
    "DateTimeField": "timestamp with time zone",
    "DurationField": "interval",
    "DecimalField": "numeric",
    "JSONField": "jsonb",
    "ArrayField": "ARRAY",
    "ForeignKey": "bigint",
    "SearchVectorField": "tsvector",
}


def _columns(table: str) -> dict[str, tuple[str, bool]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s",
            [table],
        )
        return {name: (data_type, nullable) for name, data_type, nullable in cursor.fetchall()}


UNMANAGED = [model for model in apps.get_app_config("tracking").get_models() if not model._meta.managed]


def test_every_sql_table_has_a_model():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE' AND table_name NOT LIKE 'django\\_%%'"
            " AND table_name NOT LIKE 'auth\\_%%'"
        )
        tables = {row[0] for row in cursor.fetchall()}
    assert tables == {model._meta.db_table for model in UNMANAGED}


@pytest.mark.parametrize("model", UNMANAGED, ids=lambda m: m.__name__)
def test_model_columns_types_and_nullability_match(model):
    columns = _columns(model._meta.db_table)
    fields = {field.column: field for field in model._meta.concrete_fields}
    assert set(fields) == set(columns), (
        f"{model.__name__}: model-only {set(fields) - set(columns)}, SQL-only {set(columns) - set(fields)}"
    )
    for name, field in fields.items():
        data_type, nullable = columns[name]
        if isinstance(field, GeneratedField):
            field = field.output_field
        kind = type(field).__name__ if type(field).__name__ in TYPES else field.get_internal_type()
        assert TYPES[kind] == data_type, f"{model.__name__}.{name}: {kind} vs {data_type}"
        if not field.primary_key:
            assert field.null == nullable, f"{model.__name__}.{name}: null={field.null}, SQL nullable={nullable}"
