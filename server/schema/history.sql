-- Schema history of electrified tables (package server/schema). Installed
-- idempotently by catalog.Bootstrap, in its transaction, after the lattice
-- schema exists. Format and rules: server/schema/README.md.

-- One row per version of an electrified table's schema, in order: the
-- table's columns (by attnum, which survives RENAME COLUMN and ALTER
-- TYPE), primary key and indexes after the change, and what changed.
CREATE TABLE IF NOT EXISTS lattice.schema_history (
    version      bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    relid        oid         NOT NULL,
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    -- electrify, baseline, alter (see changes), drop_table, refused
    kind         text        NOT NULL,
    -- [{"kind": "add_column" | "drop_column" | "rename_column" | "alter_type"
    --   | "alter_column" | "rename_table" | "create_index" | "drop_index",
    --   "column"/"index": name, "detail": text}]
    changes      jsonb       NOT NULL DEFAULT '[]',
    -- the statement, when the event trigger saw it
    ddl          text,
    -- event_trigger, replication (seen by the service on the stream), electrify, bootstrap
    source       text        NOT NULL,
    -- [{"attnum", "name", "type" (format_type), "typid", "typmod", "not_null", "default"}]
    columns      jsonb       NOT NULL,
    -- attnums of the primary key, in key order
    pk           int2[]      NOT NULL,
    -- [{"name", "unique", "columns": [attnum...] (0 for an expression), "partial", "def"}]
    indexes      jsonb       NOT NULL DEFAULT '[]',
    -- why the change is not supported (kind refused: the table stopped syncing)
    refused      text
);
CREATE INDEX IF NOT EXISTS schema_history_relid ON lattice.schema_history (relid, version);

-- The schema of table rel now, as stored in schema_history.
CREATE OR REPLACE FUNCTION lattice.schema_columns(rel oid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'attnum', a.attnum, 'name', a.attname::text,
               'type', format_type(a.atttypid, a.atttypmod),
               'typid', a.atttypid::int8, 'typmod', a.atttypmod,
               'not_null', a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid))
           ORDER BY a.attnum), '[]'::jsonb)
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
$$;

CREATE OR REPLACE FUNCTION lattice.schema_pk(rel oid) RETURNS int2[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = rel AND i.indisprimary), '{}')
$$;

CREATE OR REPLACE FUNCTION lattice.schema_indexes(rel oid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'name', c.relname::text, 'unique', i.indisunique,
               'columns', to_jsonb(i.indkey::int2[]),
               'partial', i.indpred IS NOT NULL,
               'def', pg_get_indexdef(i.indexrelid))
           ORDER BY c.relname), '[]'::jsonb)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = rel AND NOT i.indisprimary
$$;

-- Whether a column may change from type (otyp, omod) to (ntyp, nmod)
-- without losing or altering a value clients hold: integer widening,
-- real -> double precision, varchar(n) -> varchar(m >= n) or text or
-- varchar, numeric(p, s) -> numeric(q >= p, s) or numeric.
CREATE OR REPLACE FUNCTION lattice.type_widens(otyp oid, omod int, ntyp oid, nmod int) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN otyp = ntyp AND omod = nmod THEN true
        WHEN otyp = 21 THEN ntyp IN (23, 20)                        -- smallint -> integer, bigint
        WHEN otyp = 23 THEN ntyp = 20                               -- integer -> bigint
        WHEN otyp = 700 THEN ntyp = 701                             -- real -> double precision
        WHEN otyp = 1043 AND ntyp = 25 THEN true                    -- varchar(n) -> text
        WHEN otyp = 1043 AND ntyp = 1043 THEN nmod = -1 OR (omod <> -1 AND nmod >= omod)
        WHEN otyp = 25 AND ntyp = 1043 THEN nmod = -1               -- text -> varchar (no limit)
        WHEN otyp = 1700 AND ntyp = 1700 THEN
            nmod = -1 OR (omod <> -1 AND ((nmod - 4) & 65535) = ((omod - 4) & 65535)
                          AND ((nmod - 4) >> 16) >= ((omod - 4) >> 16))
        ELSE false
    END
$$;

-- schema_diff lists what changed between two versions of a table, and why
-- a change is not supported (refused, NULL when every change is).
CREATE OR REPLACE FUNCTION lattice.schema_diff(old_schema text, old_name text, old_cols jsonb, old_pk int2[], old_idx jsonb,
                                               new_schema text, new_name text, new_cols jsonb, new_pk int2[], new_idx jsonb,
                                               OUT changes jsonb, OUT refused text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r   record;
    why text[] := '{}';
BEGIN
    changes := '[]';
    IF old_schema <> new_schema OR old_name <> new_name THEN
        changes := changes || jsonb_build_object('kind', 'rename_table',
            'detail', format('%I.%I -> %I.%I', old_schema, old_name, new_schema, new_name));
        why := why || format('renaming it (to %I.%I) is not supported yet: clients and their shapes name tables, so they would stop receiving its changes',
                             new_schema, new_name);
    END IF;
    FOR r IN
        SELECT o.c AS o, n.c AS n, coalesce((o.c->>'attnum')::int, (n.c->>'attnum')::int) AS attnum
          FROM (SELECT c FROM jsonb_array_elements(old_cols) c) o
          FULL JOIN (SELECT c FROM jsonb_array_elements(new_cols) c) n ON (o.c->>'attnum') = (n.c->>'attnum')
         ORDER BY 3
    LOOP
        IF r.o IS NULL THEN
            changes := changes || jsonb_build_object('kind', 'add_column', 'column', r.n->>'name',
                'detail', concat_ws(' ', r.n->>'type', CASE WHEN (r.n->>'not_null')::boolean THEN 'NOT NULL' END,
                                    'DEFAULT ' || (r.n->>'default')));
            IF NOT lattice.supported_type((r.n->>'typid')::oid) THEN
                why := why || format('column %I has type %s, which Lattice cannot sync', r.n->>'name', r.n->>'type');
            END IF;
        ELSIF r.n IS NULL THEN
            changes := changes || jsonb_build_object('kind', 'drop_column', 'column', r.o->>'name');
        ELSE
            IF r.o->>'name' <> r.n->>'name' THEN
                changes := changes || jsonb_build_object('kind', 'rename_column', 'column', r.n->>'name',
                    'detail', format('%I -> %I', r.o->>'name', r.n->>'name'));
            END IF;
            IF (r.o->>'typid') <> (r.n->>'typid') OR (r.o->>'typmod') <> (r.n->>'typmod') THEN
                changes := changes || jsonb_build_object('kind', 'alter_type', 'column', r.n->>'name',
                    'detail', format('%s -> %s', r.o->>'type', r.n->>'type'));
                IF NOT lattice.type_widens((r.o->>'typid')::oid, (r.o->>'typmod')::int, (r.n->>'typid')::oid, (r.n->>'typmod')::int) THEN
                    why := why || format('column %I changes type from %s to %s, which is not a widening change (supported: smallint/integer -> bigint, real -> double precision, varchar(n) -> varchar(m >= n) or text, numeric(p,s) -> numeric(q >= p,s) or numeric)',
                                         r.n->>'name', r.o->>'type', r.n->>'type');
                END IF;
            END IF;
            IF (r.o->>'not_null') <> (r.n->>'not_null') OR (r.o->'default') IS DISTINCT FROM (r.n->'default') THEN
                changes := changes || jsonb_build_object('kind', 'alter_column', 'column', r.n->>'name',
                    'detail', concat_ws(' ', CASE WHEN (r.n->>'not_null')::boolean THEN 'NOT NULL' ELSE 'NULL' END,
                                        coalesce('DEFAULT ' || (r.n->>'default'), 'no default')));
            END IF;
        END IF;
    END LOOP;
    IF old_pk IS DISTINCT FROM new_pk THEN
        why := why || CASE WHEN cardinality(new_pk) = 0
                           THEN 'the primary key is dropped (an electrified table needs one; clients key their rows by it)'
                           ELSE 'the primary key changes (clients key their rows by it)' END;
    END IF;
    FOR r IN
        SELECT o.i AS o, n.i AS n FROM (SELECT i FROM jsonb_array_elements(old_idx) i) o
          FULL JOIN (SELECT i FROM jsonb_array_elements(new_idx) i) n ON (o.i->>'name') = (n.i->>'name')
         WHERE o.i IS NULL OR n.i IS NULL OR (o.i->>'def') <> (n.i->>'def')
         ORDER BY coalesce(o.i->>'name', n.i->>'name')
    LOOP
        IF r.o IS NOT NULL THEN
            changes := changes || jsonb_build_object('kind', 'drop_index', 'index', r.o->>'name');
        END IF;
        IF r.n IS NOT NULL THEN
            changes := changes || jsonb_build_object('kind', 'create_index', 'index', r.n->>'name', 'detail', r.n->>'def');
        END IF;
    END LOOP;
    IF cardinality(why) > 0 THEN
        refused := array_to_string(why, '; ');
    END IF;
END
$$;

-- record_schema compares table rel with its last recorded version and, if
-- it differs, records the new one (source: who saw it, ddl: the statement
-- if known). It returns why the change is not supported (NULL if it is,
-- or nothing changed); with record_refused a refused change is recorded
-- too (kind refused: the service stops syncing the table), else the
-- caller raises. A table with no history yet gets a baseline version.
CREATE OR REPLACE FUNCTION lattice.record_schema(rel oid, ddl text, source text, record_refused boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    last   lattice.schema_history;
    sch    text;
    nam    text;
    cols   jsonb;
    pk     int2[];
    idx    jsonb;
    d      record;
BEGIN
    SELECT n.nspname, c.relname INTO sch, nam FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    IF sch IS NULL THEN
        RETURN NULL;
    END IF;
    -- One writer per table at a time (a migration and the service).
    PERFORM pg_advisory_xact_lock(hashtext('lattice.schema_history'), (rel::int8 % 2147483647)::int4);
    cols := lattice.schema_columns(rel);
    pk := lattice.schema_pk(rel);
    idx := lattice.schema_indexes(rel);
    SELECT * INTO last FROM lattice.schema_history h WHERE h.relid = rel AND h.kind <> 'drop_table' ORDER BY h.version DESC LIMIT 1;
    IF last.version IS NULL THEN
        INSERT INTO lattice.schema_history (relid, table_schema, table_name, kind, ddl, source, columns, pk, indexes)
        VALUES (rel, sch, nam, CASE WHEN source = 'electrify' THEN 'electrify' ELSE 'baseline' END, ddl, source, cols, pk, idx);
        RETURN NULL;
    END IF;
    IF last.table_schema = sch AND last.table_name = nam AND last.columns = cols AND last.pk = pk AND last.indexes = idx THEN
        RETURN NULL;
    END IF;
    d := lattice.schema_diff(last.table_schema, last.table_name, last.columns, last.pk, last.indexes, sch, nam, cols, pk, idx);
    IF d.refused IS NOT NULL AND NOT record_refused THEN
        RETURN d.refused;
    END IF;
    INSERT INTO lattice.schema_history (relid, table_schema, table_name, kind, changes, ddl, source, columns, pk, indexes, refused)
    VALUES (rel, sch, nam, CASE WHEN d.refused IS NULL THEN 'alter' ELSE 'refused' END, d.changes, ddl, source, cols, pk, idx, d.refused);
    RETURN d.refused;
END
$$;

-- The name of table rel as last recorded (before a rename being refused).
CREATE OR REPLACE FUNCTION lattice.schema_name(rel oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT format('%I.%I', h.table_schema, h.table_name) FROM lattice.schema_history h
                      WHERE h.relid = rel ORDER BY h.version DESC LIMIT 1), rel::regclass::text)
$$;

-- The event trigger (ddl_command_end): records every change to an
-- electrified table with its statement, and refuses (raises, which rolls
-- the migration back) the changes Lattice cannot carry to clients. It runs
-- for the DDL of every role: SECURITY DEFINER, so that a migration role
-- needs no privilege on schema lattice.
CREATE OR REPLACE FUNCTION lattice.on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r   record;
    why text;
BEGIN
    FOR r IN
        SELECT DISTINCT e.relid::oid AS relid
          FROM pg_event_trigger_ddl_commands() c
          JOIN pg_class k ON k.oid = c.objid AND c.classid = 'pg_class'::regclass
          LEFT JOIN pg_index i ON i.indexrelid = k.oid
          JOIN lattice.electrified e ON e.relid::oid = coalesce(i.indrelid, k.oid)
    LOOP
        why := lattice.record_schema(r.relid, current_query(), 'event_trigger', false);
        IF why IS NOT NULL THEN
            RAISE EXCEPTION 'Lattice cannot apply this change to electrified table %: %', lattice.schema_name(r.relid), why
                USING HINT = 'Supported: new tables, ADD COLUMN, DROP COLUMN, RENAME COLUMN, widening type changes, CREATE/DROP INDEX, DROP TABLE. For other changes create a new table and copy the data.',
                      ERRCODE = 'feature_not_supported';
        END IF;
    END LOOP;
END
$$;

-- The event trigger (sql_drop): a dropped electrified table gets a last
-- version (kind drop_table); a dropped index is a new version of its
-- table (found by comparing every electrified table with its history).
CREATE OR REPLACE FUNCTION lattice.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r    record;
    last lattice.schema_history;
    why  text;
BEGIN
    FOR r IN
        SELECT DISTINCT d.objid FROM pg_event_trigger_dropped_objects() d
         WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.object_type = 'table'
    LOOP
        SELECT * INTO last FROM lattice.schema_history h WHERE h.relid = r.objid ORDER BY h.version DESC LIMIT 1;
        IF last.version IS NOT NULL AND last.kind <> 'drop_table' THEN
            INSERT INTO lattice.schema_history (relid, table_schema, table_name, kind, ddl, source, columns, pk, indexes)
            VALUES (r.objid, last.table_schema, last.table_name, 'drop_table', current_query(), 'event_trigger', '[]', '{}', '[]');
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d WHERE d.object_type = 'index') THEN
        FOR r IN SELECT e.relid::oid AS relid FROM lattice.electrified e WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = e.relid) LOOP
            why := lattice.record_schema(r.relid, current_query(), 'event_trigger', false);
            IF why IS NOT NULL THEN
                RAISE EXCEPTION 'Lattice cannot apply this change to electrified table %: %', lattice.schema_name(r.relid), why
                    USING HINT = 'Supported: new tables, ADD COLUMN, DROP COLUMN, RENAME COLUMN, widening type changes, CREATE/DROP INDEX, DROP TABLE. For other changes create a new table and copy the data.',
                          ERRCODE = 'feature_not_supported';
            END IF;
        END LOOP;
    END IF;
END
$$;

-- Electrified tables without history (electrified before it existed) get
-- their baseline now.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT e.relid::oid AS relid FROM lattice.electrified e
             WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = e.relid)
               AND NOT EXISTS (SELECT 1 FROM lattice.schema_history h WHERE h.relid = e.relid)
    LOOP
        PERFORM lattice.record_schema(r.relid, NULL, 'bootstrap', true);
    END LOOP;
END
$$;

-- The schema history, readable: one row per version and change.
CREATE OR REPLACE VIEW lattice.schema_changes AS
SELECT h.version, h.at, h.table_schema, h.table_name, h.kind,
       c->>'kind' AS change, coalesce(c->>'column', c->>'index') AS object, c->>'detail' AS detail,
       h.refused, h.source, h.ddl
  FROM lattice.schema_history h
  LEFT JOIN LATERAL jsonb_array_elements(h.changes) c ON true;
