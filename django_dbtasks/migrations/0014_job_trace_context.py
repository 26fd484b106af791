# Job.trace_context: the trace context of the code that enqueued the job (tracing.py).
# A nullable column without a default: PostgreSQL adds it without rewriting the table,
# and SQLite with ALTER TABLE ADD COLUMN, so it is instant on a large job table.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_dbtasks', '0013_schedule_disabled_by'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='trace_context',
            field=models.JSONField(blank=True, editable=False, null=True),
        ),
    ]
