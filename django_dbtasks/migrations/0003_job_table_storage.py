"""Storage settings for the job table (PostgreSQL only).

Every job row is updated twice (claimed, finished) soon after its insert,
so dead row versions pile up at the rate of the workload, and the ready
index is what suffers: the claim walks past dead entries until vacuum
removes them. PostgreSQL's defaults vacuum a table when 20% of it is dead,
which on a table holding a week of history means rarely. These settings
vacuum and analyze after 2% (plus 1,000 rows) instead, and leave 10% of
each page free so that the updates can often stay on the row's own page.
See docs/performance.md.
"""

from django.db import migrations

SETTINGS = (
    "fillfactor = 90, "
    "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_vacuum_insert_scale_factor = 0.02, "
    "autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000"
)
RESET = (
    "fillfactor, autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
    "autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor, "
    "autovacuum_analyze_threshold"
)


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE django_dbtasks_job SET ({SETTINGS})")


def revert(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE django_dbtasks_job RESET ({RESET})")


class Migration(migrations.Migration):
    dependencies = [("django_dbtasks", "0002_notify_trigger")]

    operations = [migrations.RunPython(apply, revert)]
