from django.conf import settings
from django.db import migrations, models

BACKEND = "django_dbtasks.backend.DatabaseBackend"


def give_existing_jobs_their_alias(apps, schema_editor):
    """Rows from before aliases were recorded belong to "default", or to the only
    alias of this backend the project configures, if that has another name."""
    ours = [
        alias
        for alias, config in getattr(settings, "TASKS", {}).items()
        if config.get("BACKEND") == BACKEND
    ]
    if len(ours) == 1 and ours[0] != "default":
        Job = apps.get_model("django_dbtasks", "Job")
        Job.objects.using(schema_editor.connection.alias).update(backend=ours[0])


class Migration(migrations.Migration):

    dependencies = [
        ("django_dbtasks", "0008_job_suspect_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="backend",
            field=models.CharField(
                db_default="default",
                default="default",
                help_text="The TASKS alias the job belongs to.",
                max_length=64,
            ),
        ),
        migrations.RunPython(give_existing_jobs_their_alias, migrations.RunPython.noop),
    ]
