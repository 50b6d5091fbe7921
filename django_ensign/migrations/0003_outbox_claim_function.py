"""The relay's claim as a PostgreSQL function (PostgreSQL only; other databases skip it).

Planning the claim statement costs more than running it (about 2 ms against 0.5 ms for a
few rows), and a relay runs it again for every handful of commits. PL/pgSQL keeps the
plan of a function's statement for the session, with no protocol-level prepared
statement, so this works through transaction-pooling proxies too. The function's SET
clause turns bitmap scans off while it runs: with statistics taken when the table was
small, the planner would otherwise bitmap-scan and sort a whole backlog to return its
first rows; without them the only plan left walks the waiting rows' partial index in id
order and stops at the limit.

Due waiting rows and expired leases are found by two scans, each over its own partial
index in id order; a single scan with an OR of both would walk the primary key past
every acked row still in the table. A row is claimable only while no earlier row of its
ordering key is unfinished. The claim commits without waiting for its WAL flush (the
relay publishes right after it, and a lost claim only means a later retry). The
function's text is frozen here: change it with a new migration.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION ensign_outbox_claim(
    p_limit integer, p_lease_seconds double precision, p_token uuid, p_topics text[]
) RETURNS TABLE (
    id bigint, event_id text, topic text, data bytea, mimetype text, type_name text,
    type_version text, metadata text, ordering_key text, attempts integer
)
LANGUAGE plpgsql
SET enable_bitmapscan = off
AS $body$
#variable_conflict use_column
BEGIN
    -- For the rest of this claim's transaction only: its commit need not wait for the
    -- WAL flush. A claim lost in a database crash leaves its rows waiting again, to be
    -- published again (at least once, as any retry); nothing is lost.
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH waiting AS (
        SELECT o.id FROM django_ensign_outboxevent o
        WHERE o.status IN ('pending', 'retrying') AND o.next_attempt_at <= statement_timestamp()
        AND (p_topics IS NULL OR o.topic = ANY(p_topics))
        AND (o.ordering_key = '' OR NOT EXISTS (
            SELECT 1 FROM django_ensign_outboxevent e
            WHERE e.ordering_key = o.ordering_key AND e.id < o.id
            AND e.status IN ('pending', 'in_flight', 'retrying')))
        ORDER BY o.id
        LIMIT p_limit
        FOR UPDATE OF o SKIP LOCKED
    ), expired AS (
        SELECT o.id FROM django_ensign_outboxevent o
        WHERE o.status = 'in_flight' AND o.lease_expires_at < statement_timestamp()
        AND (p_topics IS NULL OR o.topic = ANY(p_topics))
        AND (o.ordering_key = '' OR NOT EXISTS (
            SELECT 1 FROM django_ensign_outboxevent e
            WHERE e.ordering_key = o.ordering_key AND e.id < o.id
            AND e.status IN ('pending', 'in_flight', 'retrying')))
        ORDER BY o.id
        LIMIT p_limit
        FOR UPDATE OF o SKIP LOCKED
    ), candidates AS (
        SELECT w.id FROM waiting w UNION ALL SELECT x.id FROM expired x
        ORDER BY 1
        LIMIT p_limit
    ), claimed AS (
        UPDATE django_ensign_outboxevent t
        SET status = 'in_flight', lease_token = p_token,
            lease_expires_at = statement_timestamp() + p_lease_seconds * interval '1 second',
            attempts = t.attempts + 1
        WHERE t.id = ANY(ARRAY(SELECT c.id FROM candidates c))
        RETURNING t.id, t.event_id::text, t.topic::text, t.data, t.mimetype::text,
            t.type_name::text, t.type_version::text, t.metadata::text, t.ordering_key::text,
            t.attempts::integer
    )
    SELECT * FROM claimed;
END
$body$;
"""

DROP = "DROP FUNCTION IF EXISTS ensign_outbox_claim(integer, double precision, uuid, text[])"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("django_ensign", "0002_outbox_lean_indexes"),
    ]

    operations = [migrations.RunPython(create, drop)]
