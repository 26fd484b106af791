# Schedule.args/kwargs read stored JSON with StoredJSONDecoder, which never raises:
# a row that SQL wrote with JSON Python cannot read still loads, and is reported as
# broken instead of breaking every query. The decoder is Python only, so this
# migration changes no table (SQLite would otherwise rebuild it for nothing).

import django_dbtasks.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_dbtasks', '0009_job_backend_alias'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='schedule',
                    name='args',
                    field=models.JSONField(blank=True, decoder=django_dbtasks.models.StoredJSONDecoder, default=list),
                ),
                migrations.AlterField(
                    model_name='schedule',
                    name='kwargs',
                    field=models.JSONField(blank=True, decoder=django_dbtasks.models.StoredJSONDecoder, default=dict),
                ),
            ],
            database_operations=[],
        ),
    ]
