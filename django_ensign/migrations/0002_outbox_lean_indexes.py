"""Fewer outbox indexes: each one costs every claim and ack a write.

The new unique constraint is added before ``unique=True`` goes, so ``event_id`` is never
without one.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_ensign", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="outboxevent",
            name="ensign_outbox_status",
        ),
        migrations.RemoveIndex(
            model_name="outboxevent",
            name="ensign_outbox_topic",
        ),
        migrations.AddIndex(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("status", "acked")),
                fields=["acked_at"],
                name="ensign_outbox_acked",
            ),
        ),
        migrations.AddIndex(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("status", "dead")), fields=["id"], name="ensign_outbox_dead"
            ),
        ),
        migrations.AddConstraint(
            model_name="outboxevent",
            constraint=models.UniqueConstraint(
                fields=("event_id",), name="ensign_outbox_event_id_unique"
            ),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="event_id",
            field=models.CharField(
                help_text="Stable ULID sent as metadata; consumers deduplicate on it.",
                max_length=26,
            ),
        ),
    ]
