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
    CALL lattice.ensure_shadow(tbl); -- write-path metadata (below)
    PERFORM lattice.record_schema(tbl, NULL, 'electrify', true); -- schema history (server/schema)
    PERFORM pg_notify('lattice_electrified', tbl::text);
END
$$;

-- ---------------------------------------------------------------------------
-- Write path: merge metadata ("shadow" rows), plain-SQL stamping, idempotence.
-- Format and rules: server/writes/README.md. Everything below is idempotent.

ALTER TABLE lattice.electrified ADD COLUMN IF NOT EXISTS shadow text;
-- The json/jsonb columns merged per key path (merge/README.md, "JSON
-- columns merged per key"), set by lattice.electrify(tbl, json_merge).
ALTER TABLE lattice.electrified ADD COLUMN IF NOT EXISTS json_merge text[] NOT NULL DEFAULT '{}';

-- lattice.electrify(tbl, json_merge => ARRAY['doc', ...]) electrifies tbl
-- (as lattice.electrify(tbl)) and makes the json/jsonb columns listed merge
-- per key path instead of as one last-writer-wins value; '{}' turns that
-- off again. lattice.electrify(tbl) alone leaves the setting as it is.
CREATE OR REPLACE PROCEDURE lattice.electrify(tbl regclass, json_merge text[])
LANGUAGE plpgsql AS $$
DECLARE
    c   text;
    typ oid;
BEGIN
    FOREACH c IN ARRAY coalesce(json_merge, '{}') LOOP
        SELECT a.atttypid INTO typ FROM pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'cannot merge %.% per key: no such column', tbl, c;
        END IF;
        IF typ NOT IN (114, 3802) THEN
            RAISE EXCEPTION 'cannot merge %.% per key: it is %, not json or jsonb', tbl, c, format_type(typ, NULL)
                USING HINT = format('ALTER TABLE %s ALTER COLUMN %I TYPE jsonb USING %I::jsonb', tbl, c, c);
        END IF;
    END LOOP;
    CALL lattice.electrify(tbl);
    UPDATE lattice.electrified e SET json_merge = (SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}') FROM unnest(coalesce(electrify.json_merge, '{}')) x)
     WHERE e.relid = tbl;
    PERFORM pg_notify('lattice_electrified', tbl::text);
END
$$;

-- Client transactions already applied, for idempotent re-delivery.
CREATE TABLE IF NOT EXISTS lattice.applied (
    origin     text        NOT NULL,
    txid       bigint      NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, txid)
);

-- A stamp as a tag: 16 lower-case hex digits of the HLC (two's complement
-- of the bigint, i.e. the uint64), '/', the origin. Text order (bytewise,
-- COLLATE "C") is stamp order.
CREATE OR REPLACE FUNCTION lattice.tag(hlc bigint, origin text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lpad(to_hex(hlc), 16, '0') || '/' || origin
$$;

CREATE OR REPLACE FUNCTION lattice.tag_hlc(tag text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ('x' || substr(tag, 1, 16))::bit(64)::bigint
$$;

-- The live tags (adds minus removes), sorted bytewise.
CREATE OR REPLACE FUNCTION lattice.live_tags(adds text[], removes text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(t ORDER BY t COLLATE "C"), '{}')
    FROM (SELECT unnest(adds) EXCEPT SELECT unnest(removes)) s(t)
$$;

-- The versions at which the tags in live (a subset of adds) were added:
-- add_ver is parallel to adds; a missing entry (metadata written before
-- row versions existed) counts as version 1.
CREATE OR REPLACE FUNCTION lattice.live_versions(adds text[], add_ver bigint[], live text[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(coalesce(add_ver[array_position(adds, l)], 1) ORDER BY o), '{}')
    FROM unnest(live) WITH ORDINALITY u(l, o)
$$;

-- The greatest HLC in a row's metadata (0 if none).
CREATE OR REPLACE FUNCTION lattice.max_hlc(col_hlc bigint[], adds text[], removes text[]) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(greatest((SELECT max(h) FROM unnest(col_hlc) h),
                             (SELECT max(lattice.tag_hlc(t)) FROM unnest(adds || removes) t)), 0)
$$;

-- a extended with NULLs to upper bound n (lower bound 1). a[0] is a NULL of
-- the element type.
CREATE OR REPLACE FUNCTION lattice.pad(a anyarray, n int) RETURNS anyarray
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN coalesce(array_upper(a, 1), 0) >= n THEN a
                WHEN coalesce(cardinality(a), 0) = 0 THEN array_fill(a[0], ARRAY[n])
                ELSE a || array_fill(a[0], ARRAY[n - array_upper(a, 1)]) END
$$;

-- The stamping trigger of electrified tables (AFTER INSERT OR UPDATE OR
-- DELETE, FOR EACH ROW): keeps the shadow row of writes made by plain SQL.
-- It does nothing when lattice.applying is 'on', or is the OID of the
-- table written (the sync service sets it so while it writes a table whose
-- shadow rows it maintains itself; cascaded writes to other tables are
-- stamped). Cheap on purpose (no SET clauses, not SECURITY DEFINER): the
-- work is in stamp_row.
CREATE OR REPLACE FUNCTION lattice.stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    applying text := pg_catalog.current_setting('lattice.applying', true);
BEGIN
    IF applying = 'on' OR applying = TG_RELID::text THEN
        RETURN NULL;
    END IF;
    PERFORM lattice.stamp_row(TG_OP, TG_RELID, OLD, NEW);
    RETURN NULL;
END
$$;

-- stamp_one maintains the shadow row of record r (a row of the electrified
-- table) for a plain SQL write, as merge.Apply would for an op with Stamp
-- (t, 'pg') and Seen = the row's live tags, t greater than every HLC in the
-- row and at least the wall clock. mode is 'insert' (every column in nums
-- stamped), 'update' (the columns whose text differs from record old) or
-- 'delete' (none stamped, no tag added, tomb = the row's values). An
-- insert/update adds its tag; the live tags are retired (removes := live:
-- tags removed by earlier transactions are dropped, see README). Two
-- statements: lock and read (with the values as text), then write.
CREATE OR REPLACE FUNCTION lattice.stamp_one(shadow text, shkeys text, keyexpr text, r anyelement, old anyelement,
                                             mode text, nums int2[], names text[], maxatt int)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    texts1 text := 'NULL::text[]';
    texts2 text := 'NULL::text[]';
    h      bigint[];
    o      text[];
    ad     text[];
    rm     text[];
    t1     text[];
    t2     text[];
    live   text[];
    tomb   text[];
    t      bigint;
    cols   int2[] := '{}';
    c      int2;
    ver    bigint;
    av     bigint[];
    lv     bigint[];
BEGIN
    IF mode <> 'insert' THEN
        -- ARRAY[($1)."a"::text, NULL, ...]::text[]: the values as text, by attnum
        SELECT 'ARRAY[' || string_agg(CASE WHEN p IS NULL THEN 'NULL' ELSE format('($1).%I::text', names[p]) END, ', ' ORDER BY g) || ']::text[]',
               'ARRAY[' || string_agg(CASE WHEN p IS NULL THEN 'NULL' ELSE format('($2).%I::text', names[p]) END, ', ' ORDER BY g) || ']::text[]'
          INTO texts1, texts2
          FROM generate_series(1, maxatt) g, LATERAL array_position(nums, g::int2) p;
        IF mode = 'delete' THEN
            texts2 := 'NULL::text[]';
        END IF;
    END IF;
    EXECUTE format('SELECT s.col_hlc, s.col_origin, s.adds, s.removes, s.version, s.add_ver, %s, %s FROM (SELECT 1) d '
                   'LEFT JOIN LATERAL (SELECT col_hlc, col_origin, adds, removes, version, add_ver FROM %s WHERE (%s) = (%s) FOR UPDATE) s ON true',
                   texts1, texts2, shadow, shkeys, keyexpr)
        INTO h, o, ad, rm, ver, av, t1, t2 USING r, old;
    live := lattice.live_tags(coalesce(ad, '{}'), coalesce(rm, '{}'));
    -- The versions at which the live tags were added (in live's order), and
    -- the row's next version.
    lv := lattice.live_versions(coalesce(ad, '{}'), coalesce(av, '{}'), live);
    ver := coalesce(ver, 0) + 1;
    t := greatest(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16, lattice.max_hlc(h, ad, rm) + 1);
    h := lattice.pad(h, maxatt);
    o := lattice.pad(o, maxatt);
    IF mode = 'insert' THEN
        cols := nums;
    ELSIF mode = 'update' THEN
        SELECT coalesce(array_agg(n ORDER BY n), '{}') INTO cols FROM unnest(nums) n WHERE t1[n] IS DISTINCT FROM t2[n];
    END IF;
    FOREACH c IN ARRAY cols LOOP
        h[c] := t;
        o[c] := 'pg';
    END LOOP;
    IF mode = 'delete' THEN
        ad := live;
        av := lv;
        tomb := t1;
    ELSE
        ad := live || lattice.tag(t, 'pg'); -- t exceeds every HLC: stays sorted
        av := lv || ver;
    END IF;
    EXECUTE format('INSERT INTO %s (%s, col_hlc, col_origin, adds, removes, tomb, version, add_ver) VALUES (%s, $2, $3, $4, $5, $6, $7, $8) '
                   'ON CONFLICT (%s) DO UPDATE SET col_hlc = excluded.col_hlc, col_origin = excluded.col_origin, '
                   'adds = excluded.adds, removes = excluded.removes, tomb = excluded.tomb, '
                   'version = excluded.version, add_ver = excluded.add_ver',
                   shadow, shkeys, keyexpr, shkeys)
        USING r, h, o, ad, live, tomb, ver, av;
END
$$;

-- stamp_row keeps the shadow row of a plain SQL write to an electrified
-- table (op: TG_OP; rel: TG_RELID; o, n: OLD, NEW). Values are compared and
-- kept (tomb) as Postgres text under the service's session settings
-- (coltype.SessionParams), set below.
CREATE OR REPLACE FUNCTION lattice.stamp_row(op text, rel oid, o anyelement, n anyelement) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "DateStyle" = 'ISO, MDY'
SET "TimeZone" = 'UTC'
SET "IntervalStyle" = 'iso_8601'
SET extra_float_digits = 3
SET bytea_output = 'hex'
AS $$
DECLARE
    applying text := current_setting('lattice.applying', true);
    root     oid;
    shadow   text;
    nums     int2[];
    names    text[];
    keyexpr  text;  -- the key of record $1: ($1)."id", ...
    shkeys   text;  -- pk1, pk2, ...
    pknames  text[];
BEGIN
    -- The electrified table (rel, or the partitioned table rel is a
    -- partition of), its shadow, its columns by attnum (fields of OLD/NEW
    -- are read by name) and its primary key, in one query.
    SELECT e.relid, e.shadow, c.nums, c.names, k.keyexpr, k.shkeys, k.pknames
      INTO root, shadow, nums, names, keyexpr, shkeys, pknames
      FROM lattice.electrified e
     CROSS JOIN LATERAL (SELECT array_agg(a.attnum ORDER BY a.attnum) AS nums, array_agg(a.attname::text ORDER BY a.attnum) AS names
                           FROM pg_attribute a
                          WHERE a.attrelid = e.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') c
     CROSS JOIN LATERAL (SELECT string_agg(format('($1).%I', a.attname), ', ' ORDER BY k.o) AS keyexpr,
                                string_agg('pk' || k.o, ', ' ORDER BY k.o) AS shkeys,
                                array_agg(a.attname::text ORDER BY k.o) AS pknames
                           FROM pg_index i
                          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
                           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                          WHERE i.indrelid = e.relid AND i.indisprimary) k
     WHERE e.relid = rel OR (NOT EXISTS (SELECT 1 FROM lattice.electrified x WHERE x.relid = rel)
                             AND e.relid IN (SELECT a.relid FROM pg_partition_ancestors(rel) a))
     LIMIT 1;
    IF shadow IS NULL OR applying = root::text THEN
        RETURN;
    END IF;
    IF op = 'INSERT' THEN
        PERFORM lattice.stamp_one(shadow, shkeys, keyexpr, n, n, 'insert', nums, names, nums[cardinality(nums)]);
    ELSIF op = 'DELETE' THEN
        PERFORM lattice.stamp_one(shadow, shkeys, keyexpr, o, o, 'delete', nums, names, nums[cardinality(nums)]);
    ELSIF EXISTS (SELECT 1 FROM unnest(pknames) p WHERE to_jsonb(o) -> p IS DISTINCT FROM to_jsonb(n) -> p) THEN
        -- A key change is a delete of the old key and an insert of the new one.
        PERFORM lattice.stamp_one(shadow, shkeys, keyexpr, o, o, 'delete', nums, names, nums[cardinality(nums)]);
        PERFORM lattice.stamp_one(shadow, shkeys, keyexpr, n, n, 'insert', nums, names, nums[cardinality(nums)]);
    ELSE
        PERFORM lattice.stamp_one(shadow, shkeys, keyexpr, n, o, 'update', nums, names, nums[cardinality(nums)]);
    END IF;
END
$$;

-- The INSERT side of the stamping trigger, per statement (AFTER INSERT,
-- REFERENCING NEW TABLE AS lattice_new): bulk inserts get their metadata
-- in one set-based statement (every column and one tag stamped (t, 'pg'),
-- t = the wall clock), as ensure_shadow does for existing rows. Keys that
-- already have metadata (a row inserted again after a delete) are merged
-- row by row by stamp_row.
CREATE OR REPLACE FUNCTION lattice.stamp_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    applying text := current_setting('lattice.applying', true);
    root     oid;
    shadow   text;
    nums     int2[];
    shkeys   text;
    sqkeys   text;
    srckeys  text;
    maxatt   int;
    t        bigint;
    h        bigint[];
    o        text[];
    c        int2;
BEGIN
    IF applying = 'on' OR applying = TG_RELID::text THEN
        RETURN NULL;
    END IF;
    SELECT e.relid, e.shadow INTO root, shadow
      FROM lattice.electrified e
     WHERE e.relid = TG_RELID OR (NOT EXISTS (SELECT 1 FROM lattice.electrified x WHERE x.relid = TG_RELID)
                                  AND e.relid IN (SELECT a.relid FROM pg_partition_ancestors(TG_RELID) a))
     LIMIT 1;
    IF shadow IS NULL OR applying = root::text THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(a.attnum ORDER BY a.attnum) INTO nums
      FROM pg_attribute a
     WHERE a.attrelid = root AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    SELECT string_agg('pk' || k.o, ', ' ORDER BY k.o), string_agg('s.pk' || k.o, ', ' ORDER BY k.o),
           string_agg(format('n.%I', a.attname), ', ' ORDER BY k.o)
      INTO shkeys, sqkeys, srckeys
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
     WHERE i.indrelid = root AND i.indisprimary;
    EXECUTE format('SELECT lattice.stamp_row(''INSERT'', $1, ROW(n.*)::%s, ROW(n.*)::%s) FROM lattice_new n '
                   'WHERE EXISTS (SELECT 1 FROM %s s WHERE (%s) = (%s))',
                   root::regclass, root::regclass, shadow, sqkeys, srckeys)
        USING TG_RELID;
    maxatt := nums[cardinality(nums)];
    t := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16;
    h := array_fill(NULL::bigint, ARRAY[maxatt]);
    o := array_fill(NULL::text, ARRAY[maxatt]);
    FOREACH c IN ARRAY nums LOOP
        h[c] := t;
        o[c] := 'pg';
    END LOOP;
    EXECUTE format('INSERT INTO %s (%s, col_hlc, col_origin, adds, version, add_ver) SELECT %s, $1, $2, $3, 1, ''{1}'' FROM lattice_new n ON CONFLICT DO NOTHING',
                   shadow, shkeys, srckeys)
        USING h, o, ARRAY[lattice.tag(t, 'pg')];
    RETURN NULL;
END
$$;

-- TRUNCATE of an electrified table (not synced) forgets its merge metadata.
CREATE OR REPLACE FUNCTION lattice.truncate_shadow() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    shadow text;
BEGIN
    SELECT e.shadow INTO shadow FROM lattice.electrified e WHERE e.relid = TG_RELID;
    IF shadow IS NOT NULL AND to_regclass(shadow) IS NOT NULL THEN
        EXECUTE 'TRUNCATE ' || shadow;
    END IF;
    RETURN NULL;
END
$$;

-- ensure_shadow creates what the write path needs for an electrified table,
-- adding only what is missing: the shadow table lattice.shadow_<oid> (keyed
-- by the primary key, as pk1..pkN; re-created if the key's types changed),
-- the stamping and truncate triggers, and metadata for rows that have none
-- (every column stamped, one live tag, as if inserted now by plain SQL).
CREATE OR REPLACE PROCEDURE lattice.ensure_shadow(tbl regclass)
LANGUAGE plpgsql AS $$
DECLARE
    qshadow  text := format('lattice.%I', 'shadow_' || tbl::oid::text);
    keydefs  text;
    shkeys   text;
    srckeys  text;
    keytypes text;
    curtypes text;
    nums     int2[];
    maxatt   int;
    t        bigint;
    h        bigint[];
    o        text[];
    c        int2;
BEGIN
    SELECT string_agg(format('pk%s %s%s NOT NULL', k.o, format_type(a.atttypid, a.atttypmod),
                             CASE WHEN a.attcollation = 0 THEN '' ELSE ' COLLATE ' || a.attcollation::regcollation::text END), ', ' ORDER BY k.o),
           string_agg('pk' || k.o, ', ' ORDER BY k.o),
           string_agg(format('%I', a.attname), ', ' ORDER BY k.o),
           string_agg(format_type(a.atttypid, a.atttypmod), ', ' ORDER BY k.o)
      INTO keydefs, shkeys, srckeys, keytypes
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
     WHERE i.indrelid = tbl AND i.indisprimary;
    IF keydefs IS NULL THEN
        RAISE EXCEPTION 'cannot electrify %: it has no primary key', tbl;
    END IF;
    IF to_regclass(qshadow) IS NOT NULL THEN
        SELECT string_agg(format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) INTO curtypes
          FROM pg_attribute a
         WHERE a.attrelid = to_regclass(qshadow) AND a.attnum > 0 AND NOT a.attisdropped AND a.attname ~ '^pk[0-9]+$';
        IF curtypes IS DISTINCT FROM keytypes THEN
            RAISE NOTICE 'primary key of % changed: re-creating %', tbl, qshadow;
            EXECUTE 'DROP TABLE ' || qshadow;
        END IF;
    END IF;
    IF to_regclass(qshadow) IS NULL THEN
        EXECUTE format('CREATE TABLE %s (%s, col_hlc bigint[] NOT NULL DEFAULT ''{}'', col_origin text[] NOT NULL DEFAULT ''{}'', '
                       'adds text[] NOT NULL DEFAULT ''{}'', removes text[] NOT NULL DEFAULT ''{}'', tomb text[], PRIMARY KEY (%s))',
                       qshadow, keydefs, shkeys);
        EXECUTE format('COMMENT ON TABLE %s IS %L', qshadow, format('Lattice merge metadata of %s (see server/writes/README.md)', tbl));
    END IF;
    -- Row versions (protocol 2.6): version counts the row's writes;
    -- add_ver, parallel to adds, the version at which each tag was added.
    -- Metadata from before they existed is at version 1.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(qshadow) AND attname = 'add_ver' AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0, '
                       'ADD COLUMN IF NOT EXISTS add_ver bigint[] NOT NULL DEFAULT ''{}''', qshadow);
        EXECUTE format('UPDATE %s SET version = 1, add_ver = array_fill(1::bigint, ARRAY[cardinality(adds)]) '
                       'WHERE version = 0 AND cardinality(adds) > 0', qshadow);
    END IF;
    -- Per-key JSON merge state (writes/README.md, "JSON columns"): written
    -- by the service only; plain SQL writes are reconciled when the service
    -- next writes the row.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(qshadow) AND attname = 'docs' AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS docs text', qshadow);
    END IF;
    -- The versions reach the replication stream with the rows they belong
    -- to: the shadow is published, its key and version only.
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'lattice')
       AND NOT EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                       WHERE p.pubname = 'lattice' AND pr.prrelid = to_regclass(qshadow)) THEN
        EXECUTE format('ALTER PUBLICATION lattice ADD TABLE %s (%s, version)', qshadow, shkeys);
    END IF;
    UPDATE lattice.electrified SET shadow = qshadow WHERE relid = tbl AND shadow IS DISTINCT FROM qshadow;
    -- Inserts are stamped per statement (bulk loads), updates and deletes
    -- per row. (Earlier versions stamped inserts per row: replace that.)
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'lattice_stamp' AND tgtype & 4 <> 0) THEN
        EXECUTE format('DROP TRIGGER lattice_stamp ON %s', tbl);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'lattice_stamp') THEN
        EXECUTE format('CREATE TRIGGER lattice_stamp AFTER UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION lattice.stamp()', tbl);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'lattice_stamp_insert') THEN
        EXECUTE format('CREATE TRIGGER lattice_stamp_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS lattice_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION lattice.stamp_insert()', tbl);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'lattice_truncate') THEN
        EXECUTE format('CREATE TRIGGER lattice_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION lattice.truncate_shadow()', tbl);
    END IF;
    -- Rows without metadata (the trigger above now blocks concurrent writers).
    SELECT array_agg(a.attnum ORDER BY a.attnum) INTO nums
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    maxatt := nums[cardinality(nums)];
    t := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16;
    h := array_fill(NULL::bigint, ARRAY[maxatt]);
    o := array_fill(NULL::text, ARRAY[maxatt]);
    FOREACH c IN ARRAY nums LOOP
        h[c] := t;
        o[c] := 'pg';
    END LOOP;
    EXECUTE format('INSERT INTO %s (%s, col_hlc, col_origin, adds, version, add_ver) SELECT %s, $1, $2, $3, 1, ''{1}'' FROM %s ON CONFLICT DO NOTHING',
                   qshadow, shkeys, srckeys, tbl)
        USING h, o, ARRAY[lattice.tag(t, 'pg')];
END
$$;

-- Tables electrified before the write path existed get their metadata now.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT e.relid FROM lattice.electrified e
             WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = e.relid)
               AND (e.shadow IS NULL OR to_regclass(e.shadow) IS NULL
                    OR NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = e.relid AND t.tgname = 'lattice_stamp_insert')
                    OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(e.shadow) AND a.attname = 'add_ver')
                    OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(e.shadow) AND a.attname = 'docs')
                    OR (EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'lattice')
                        AND NOT EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                                        WHERE p.pubname = 'lattice' AND pr.prrelid = to_regclass(e.shadow))))
    LOOP
        CALL lattice.ensure_shadow(r.relid);
    END LOOP;
END
$$;

-- Metadata of tables dropped since they were electrified: their shadows
-- (still published) and their entries. A change to a dropped table that
-- replication has yet to read is still decoded (historic catalog); the
-- service drops the versions of a table it cannot describe.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS shadow
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'lattice' AND c.relkind = 'r' AND c.relname ~ '^shadow_[0-9]+$'
                AND NOT EXISTS (SELECT 1 FROM pg_class b WHERE b.oid = substr(c.relname, 8)::oid)
    LOOP
        EXECUTE 'DROP TABLE ' || r.shadow;
    END LOOP;
    DELETE FROM lattice.electrified e WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = e.relid);
END
$$;
