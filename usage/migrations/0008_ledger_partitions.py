"""On PostgreSQL, the ledger table becomes partitioned by month of `started_at` (usage.partitions says why and
how); SQLite keeps the plain table and this migration does nothing there.

The rows are copied into the new table in this migration's transaction: about a minute per few million rows,
during which the ledger cannot be written (run it before the new servers start, as `manage.py prepare` does;
the old servers' writers keep their rows in their spools and write them once it is done). Going back to 0007
keeps the partitioned table, which earlier versions read and write the same way.
"""

from typing import Any

from django.db import migrations

TABLE = "usage_ledgerentry"
NEW = f"{TABLE}_partitioned"


def partition_ledger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    from usage.partitions import DEFAULT_PARTITION, Month, ensure_partitions, is_partitioned

    if is_partitioned():  # migrated back to 0007 and forward again
        ensure_partitions()
        return
    ledger = apps.get_model("usage", "LedgerEntry")
    execute = schema_editor.execute
    execute("SET LOCAL statement_timeout = 0")
    execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT min(started_at), max(started_at), max(id) FROM {TABLE}")
        oldest, newest, last_id = cursor.fetchone()

    # The identity of `id` is not copied (PostgreSQL 15 has no identity columns on partitioned tables): a sequence
    # owned by the column takes its place, continuing where the old one stopped.
    execute(f"CREATE TABLE {NEW} (LIKE {TABLE} INCLUDING DEFAULTS) PARTITION BY RANGE (started_at)")
    execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {NEW} DEFAULT")
    if oldest is not None:
        month, last = Month.of(oldest), Month.of(newest)
        while month <= last:
            execute(
                f"CREATE TABLE {month.table} PARTITION OF {NEW} FOR VALUES FROM (%s) TO (%s)",
                [month.start, month.next().start],
            )
            month = month.next()
    execute(f"INSERT INTO {NEW} SELECT * FROM {TABLE}")
    execute(f"DROP TABLE {TABLE}")
    execute(f"ALTER TABLE {NEW} RENAME TO {TABLE}")

    execute(f"CREATE SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id")
    execute(f"SELECT setval('{TABLE}_id_seq', %s, %s)", [last_id or 1, last_id is not None])
    execute(f"ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT nextval('{TABLE}_id_seq')")
    execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, started_at)")
    execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_exchange_id_key UNIQUE (exchange_id, started_at)")
    for column in ("key_id", "user_id"):
        target = ledger._meta.get_field(column.removesuffix("_id")).related_model._meta.db_table
        execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_{column}_fk FOREIGN KEY ({column}) "
            f"REFERENCES {target} (id) DEFERRABLE INITIALLY DEFERRED"
        )
    for index in ledger._meta.indexes:
        schema_editor.add_index(ledger, index)
    ensure_partitions()


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0007_ledger_fallback_index"),
    ]

    operations = [
        migrations.RunPython(partition_ledger, migrations.RunPython.noop, elidable=False),
    ]
