"""Notify workers when jobs are inserted (PostgreSQL only; see notify.py)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION dbtasks_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dbtasks', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER dbtasks_job_notify
    AFTER INSERT ON django_dbtasks_job
    FOR EACH STATEMENT EXECUTE FUNCTION dbtasks_job_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS dbtasks_job_notify ON django_dbtasks_job;
DROP FUNCTION IF EXISTS dbtasks_job_notify();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("django_dbtasks", "0001_initial")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
