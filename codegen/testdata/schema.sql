-- The schema of the generator's tests: every supported type, enums (one in
-- another schema, one used in an array), arrays, defaults with and without a
-- local equivalent, a composite primary key, foreign keys (simple, composite,
-- to itself), a table outside schema public and awkward names.
CREATE TYPE status AS ENUM ('open', 'doing', 'done');
CREATE TYPE mood AS ENUM ('happy', 'it''s "fine"');
CREATE SCHEMA app;
CREATE TYPE app.role AS ENUM ('admin', 'member');

CREATE TABLE project (
    id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE issue (
    id          bigserial PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES project(id),
    parent_id   bigint REFERENCES issue(id),
    title       text NOT NULL DEFAULT '',
    status      status NOT NULL DEFAULT 'open',
    moods       mood[],
    priority    smallint NOT NULL DEFAULT 2,
    points      integer,
    views       bigint NOT NULL DEFAULT 0,
    score       real,
    weight      double precision DEFAULT 1.5,
    budget      numeric(12,2),
    done        boolean NOT NULL DEFAULT false,
    code        varchar(10),
    flag        char(3),
    sysname     name,
    due         date DEFAULT CURRENT_DATE,
    at_time     time,
    local_ts    timestamp DEFAULT now(),
    updated_at  timestamptz DEFAULT now(),
    estimate    interval,
    meta        json,
    doc         jsonb NOT NULL DEFAULT '{}',
    attachment  bytea,
    tags        text[] NOT NULL DEFAULT '{}',
    counts      integer[],
    big_list    bigint[],
    ratios      double precision[],
    flags       boolean[],
    "Weird ""name"" col" text
);

CREATE TABLE label (
    project_id uuid NOT NULL REFERENCES project(id),
    name       text NOT NULL,
    color      text NOT NULL DEFAULT 'gray',
    PRIMARY KEY (project_id, name)
);

CREATE TABLE issue_label (
    issue_id   bigint NOT NULL REFERENCES issue(id),
    project_id uuid NOT NULL,
    label_name text NOT NULL,
    PRIMARY KEY (issue_id, project_id, label_name),
    FOREIGN KEY (project_id, label_name) REFERENCES label(project_id, name)
);

CREATE TABLE app.user_role (
    user_id text PRIMARY KEY,
    role    app.role NOT NULL DEFAULT 'member',
    roles   app.role[] NOT NULL DEFAULT '{}',
    since   date NOT NULL DEFAULT '2024-01-01'
);
