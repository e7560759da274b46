from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-06T04:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "catalogue version: bumped by triggers on every product or category write"


class RawSQL(Table, tablename="catalog_version"):
    pass


CATALOGUE_TABLES = ("product", "category")
OPERATIONS = ("INSERT", "UPDATE", "DELETE")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="shop", description=DESCRIPTION)

    async def add_version():
        await RawSQL.raw("CREATE TABLE catalog_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)")
        await RawSQL.raw("INSERT INTO catalog_version (id, version) VALUES (1, 1)")
        if RawSQL._meta.db.engine_type == "postgres":
            await RawSQL.raw(
                "CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$"
            )
            for table in CATALOGUE_TABLES:
                # Deferred to commit: the one version row is locked only while a transaction commits,
                # not for the rest of every order's stock reservation.
                await RawSQL.raw(
                    f"CREATE CONSTRAINT TRIGGER {table}_catalog_version AFTER INSERT OR UPDATE OR DELETE "
                    f"ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_catalog_version()"
                )
            return
        for table in CATALOGUE_TABLES:
            for operation in OPERATIONS:
                await RawSQL.raw(
                    f"CREATE TRIGGER {table}_{operation.lower()}_catalog_version AFTER {operation} ON {table} "
                    "BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END"
                )

    async def drop_version():
        if RawSQL._meta.db.engine_type == "postgres":
            for table in CATALOGUE_TABLES:
                await RawSQL.raw(f"DROP TRIGGER {table}_catalog_version ON {table}")
            await RawSQL.raw("DROP FUNCTION bump_catalog_version()")
        else:
            for table in CATALOGUE_TABLES:
                for operation in OPERATIONS:
                    await RawSQL.raw(f"DROP TRIGGER {table}_{operation.lower()}_catalog_version")
        await RawSQL.raw("DROP TABLE catalog_version")

    manager.add_raw(add_version)
    manager.add_raw_backwards(drop_version)
    return manager
