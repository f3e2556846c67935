-- The lattice schema: created idempotently by `lattice serve` (and by
-- `lattice electrify`) in one transaction under an advisory lock.
CREATE SCHEMA IF NOT EXISTS lattice;

CREATE TABLE IF NOT EXISTS lattice.electrified (
    relid          regclass PRIMARY KEY,
    electrified_at timestamptz NOT NULL DEFAULT now()
);

-- The element types Lattice can sync (see coltype/README.md).
CREATE OR REPLACE FUNCTION lattice.supported_type(t oid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT t IN (21, 23, 20, 700, 701, 1700, 16, 25, 1043, 1042, 19, 2950,
                 1082, 1083, 1114, 1184, 1186, 114, 3802, 17)
        OR EXISTS (SELECT 1 FROM pg_type WHERE oid = t AND typtype = 'e')
        OR EXISTS (SELECT 1 FROM pg_type a
                   WHERE a.oid = t AND a.typcategory = 'A' AND a.typelem <> 0
                     AND (a.typelem IN (21, 23, 20, 700, 701, 1700, 16, 25, 1043, 1042, 19, 2950,
                                        1082, 1083, 1114, 1184, 1186, 114, 3802, 17)
                          OR EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = a.typelem AND e.typtype = 'e')))
$$;

-- lattice.electrify opts a table in to sync. It refuses tables it cannot
-- sync, saying what to change. Calling it again is harmless.
CREATE OR REPLACE PROCEDURE lattice.electrify(tbl regclass)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    bad text := '';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = tbl AND relkind IN ('r', 'p')) THEN
        RAISE EXCEPTION 'cannot electrify %: it is not a table', tbl;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = tbl AND indisprimary) THEN
        RAISE EXCEPTION 'cannot electrify %: it has no primary key', tbl
            USING HINT = format('Add one, e.g. ALTER TABLE %s ADD PRIMARY KEY (id).', tbl);
    END IF;
    FOR r IN
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS typ
        FROM pg_attribute a
        WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated = '' AND NOT lattice.supported_type(a.atttypid)
        ORDER BY a.attnum
    LOOP
        bad := bad || format('%s%I %s', CASE WHEN bad = '' THEN '' ELSE ', ' END, r.attname, r.typ);
    END LOOP;
    IF bad <> '' THEN
        RAISE EXCEPTION 'cannot electrify %: unsupported column type(s): %', tbl, bad
            USING HINT = 'Supported: smallint, integer, bigint, real, double precision, numeric, boolean, text, varchar, char, uuid, date, time, timestamp, timestamptz, interval, json, jsonb, bytea, enums, and one-dimensional arrays of these. Change the column type or drop the column.';
    END IF;
    FOR r IN
        SELECT c.conname, c.confrelid::regclass AS parent
        FROM pg_constraint c
        WHERE c.conrelid = tbl AND c.contype = 'f' AND c.confrelid <> tbl
          AND NOT EXISTS (SELECT 1 FROM lattice.electrified e WHERE e.relid = c.confrelid)
    LOOP
        RAISE EXCEPTION 'cannot electrify %: foreign key % references %, which is not electrified', tbl, r.conname, r.parent
            USING HINT = format('Electrify it first: CALL lattice.electrify(''%s'');', r.parent);
    END LOOP;

    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', tbl);
    IF NOT EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                   WHERE p.pubname = 'lattice' AND pr.prrelid = tbl) THEN
        IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'lattice') THEN
            RAISE EXCEPTION 'cannot electrify %: publication "lattice" does not exist', tbl
                USING HINT = 'Start `lattice serve` once against this database; it creates the publication.';
        END IF;
        EXECUTE format('ALTER PUBLICATION lattice ADD TABLE %s', tbl);
    END IF;
    INSERT INTO lattice.electrified (relid) VALUES (tbl) ON CONFLICT DO NOTHING;
    PERFORM pg_notify('lattice_electrified', tbl::text);
END
$$;
