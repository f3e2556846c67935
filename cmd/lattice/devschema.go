package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/server/catalog"
)

// demoRole is the Postgres role the demo's clients act as (server.Config.AuthRole):
// its row-level security policies below decide what each user reads and writes.
const demoRole = "lattice_demo_user"

// demoSub is the user id of a client's token, as policies see it.
const demoSub = `(current_setting('request.jwt.claims', true)::jsonb ->> 'sub')`

// demoMember is the policy term "the row's project is one of the user's":
// the subquery form the service evaluates on the live stream (server/authz).
const demoMember = `project_id IN (SELECT project_id FROM project_member WHERE user_id = ` + demoSub + `)`

// demoSchema is the example app's schema (examples/react): projects, their
// members, issues and the issues' comments, and who may see and change
// what. Idempotent, and it upgrades a database made before access control
// (comment.project_id, project_member, the policies). Status and priority
// are enums: the generated client types them as unions of their labels, and
// Postgres rejects a bad client write.
//
// Access (row-level security for role lattice_demo_user, the claims of the
// client's token in request.jwt.claims):
//   - a user reads the projects they are a member of, their issues and
//     comments, and their own project_member rows;
//   - members insert, update and delete the issues and comments of their
//     projects, update their projects, and add users to them (an insert
//     into project_member);
//   - anyone creates a project, and may make themselves its first member
//     (the app does both in one transaction).
//
// comment.project_id (its issue's project, kept by triggers) lets the
// comment policy use the membership subquery directly: a subquery's table
// may not itself have a policy with a subquery (one level, server/authz).
// The write policies use two SECURITY DEFINER helpers: Postgres enforces
// write policies itself (the service's stream judges only SELECT
// policies), and a project_member policy cannot read project_member
// through RLS (recursion).
const demoSchema = `
DO $$ BEGIN
    CREATE TYPE issue_status AS ENUM ('backlog', 'todo', 'in_progress', 'done', 'canceled');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE TYPE issue_priority AS ENUM ('none', 'urgent', 'high', 'medium', 'low');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + demoRole + `') THEN
        CREATE ROLE ` + demoRole + ` NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, '` + demoRole + `', 'MEMBER') THEN
        EXECUTE format('GRANT ` + demoRole + ` TO %I', current_user);
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS project (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created     timestamptz NOT NULL DEFAULT now(),
    modified    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS project_member (
    project_id  uuid NOT NULL REFERENCES project(id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX IF NOT EXISTS project_member_user_id ON project_member (user_id);
CREATE TABLE IF NOT EXISTS issue (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id  uuid NOT NULL REFERENCES project(id) ON DELETE CASCADE,
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    priority    issue_priority NOT NULL DEFAULT 'none',
    status      issue_status NOT NULL DEFAULT 'backlog',
    kanbanorder text NOT NULL DEFAULT '',
    username    text NOT NULL DEFAULT '',
    created     timestamptz NOT NULL DEFAULT now(),
    modified    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS issue_project_id ON issue (project_id);
CREATE TABLE IF NOT EXISTS comment (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    issue_id    uuid NOT NULL REFERENCES issue(id) ON DELETE CASCADE,
    body        text NOT NULL,
    username    text NOT NULL DEFAULT '',
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS comment_issue_id ON comment (issue_id);

-- comment.project_id: added (not in CREATE TABLE) so that new and upgraded
-- databases have the same column order; backfilled, then kept by triggers.
ALTER TABLE comment ADD COLUMN IF NOT EXISTS project_id uuid;
CREATE OR REPLACE FUNCTION comment_project_id() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$
DECLARE p uuid;
BEGIN
    SELECT project_id INTO p FROM issue WHERE id = NEW.issue_id;
    IF FOUND THEN NEW.project_id := p; END IF;
    RETURN NEW;
END $f$;
CREATE OR REPLACE TRIGGER comment_project_id BEFORE INSERT OR UPDATE OF issue_id, project_id ON comment
    FOR EACH ROW EXECUTE FUNCTION comment_project_id();
CREATE OR REPLACE FUNCTION issue_moved() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$
BEGIN
    UPDATE comment SET project_id = NEW.project_id WHERE issue_id = NEW.id;
    RETURN NULL;
END $f$;
CREATE OR REPLACE TRIGGER issue_moved AFTER UPDATE OF project_id ON issue
    FOR EACH ROW WHEN (OLD.project_id IS DISTINCT FROM NEW.project_id) EXECUTE FUNCTION issue_moved();
UPDATE comment c SET project_id = i.project_id FROM issue i WHERE i.id = c.issue_id AND c.project_id IS DISTINCT FROM i.project_id;
ALTER TABLE comment ALTER COLUMN project_id SET NOT NULL;
CREATE INDEX IF NOT EXISTS comment_project_id ON comment (project_id);

-- Helpers of the write policies (they read project_member as its owner).
CREATE OR REPLACE FUNCTION demo_is_member(p uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $f$
    SELECT EXISTS (SELECT 1 FROM project_member WHERE project_id = p AND user_id = ` + demoSub + `)
$f$;
CREATE OR REPLACE FUNCTION demo_has_members(p uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $f$
    SELECT EXISTS (SELECT 1 FROM project_member WHERE project_id = p)
$f$;

GRANT SELECT, INSERT, UPDATE, DELETE ON project, project_member, issue, comment TO ` + demoRole + `;
ALTER TABLE project ENABLE ROW LEVEL SECURITY;
ALTER TABLE project_member ENABLE ROW LEVEL SECURITY;
ALTER TABLE issue ENABLE ROW LEVEL SECURITY;
ALTER TABLE comment ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS project_read ON project;
CREATE POLICY project_read ON project FOR SELECT TO ` + demoRole + `
    USING (id IN (SELECT project_id FROM project_member WHERE user_id = ` + demoSub + `));
DROP POLICY IF EXISTS project_create ON project;
CREATE POLICY project_create ON project FOR INSERT TO ` + demoRole + ` WITH CHECK (true);
DROP POLICY IF EXISTS project_edit ON project;
CREATE POLICY project_edit ON project FOR UPDATE TO ` + demoRole + ` USING (demo_is_member(id));

DROP POLICY IF EXISTS member_read ON project_member;
CREATE POLICY member_read ON project_member FOR SELECT TO ` + demoRole + ` USING (user_id = ` + demoSub + `);
DROP POLICY IF EXISTS member_add ON project_member;
CREATE POLICY member_add ON project_member FOR INSERT TO ` + demoRole + `
    WITH CHECK (demo_is_member(project_id) OR (user_id = ` + demoSub + ` AND NOT demo_has_members(project_id)));

DROP POLICY IF EXISTS issue_read ON issue;
CREATE POLICY issue_read ON issue FOR SELECT TO ` + demoRole + ` USING (` + demoMember + `);
DROP POLICY IF EXISTS issue_insert ON issue;
CREATE POLICY issue_insert ON issue FOR INSERT TO ` + demoRole + ` WITH CHECK (` + demoMember + `);
DROP POLICY IF EXISTS issue_update ON issue;
CREATE POLICY issue_update ON issue FOR UPDATE TO ` + demoRole + ` USING (` + demoMember + `) WITH CHECK (` + demoMember + `);
DROP POLICY IF EXISTS issue_delete ON issue;
CREATE POLICY issue_delete ON issue FOR DELETE TO ` + demoRole + ` USING (` + demoMember + `);

DROP POLICY IF EXISTS comment_read ON comment;
CREATE POLICY comment_read ON comment FOR SELECT TO ` + demoRole + ` USING (` + demoMember + `);
DROP POLICY IF EXISTS comment_insert ON comment;
CREATE POLICY comment_insert ON comment FOR INSERT TO ` + demoRole + ` WITH CHECK (` + demoMember + `);
DROP POLICY IF EXISTS comment_update ON comment;
CREATE POLICY comment_update ON comment FOR UPDATE TO ` + demoRole + ` USING (` + demoMember + `) WITH CHECK (` + demoMember + `);
DROP POLICY IF EXISTS comment_delete ON comment;
CREATE POLICY comment_delete ON comment FOR DELETE TO ` + demoRole + ` USING (` + demoMember + `);
`

// demoTables are electrified parents first.
var demoTables = []string{"project", "project_member", "issue", "comment"}

// seedMembers are the members of the k-th seeded project (in creation
// order): the default user "demo" is in every project (it sees everything,
// as before access control); alice and bob take turns, so that they see
// different projects (alice the first, largest one).
func seedMembers(k int) []string {
	if k%2 == 0 {
		return []string{"demo", "alice"}
	}
	return []string{"demo", "bob"}
}

// seedMembersSQL gives the projects of a database made before access
// control the members seedMembers would have given them (once: only while
// project_member is empty).
const seedMembersSQL = `
INSERT INTO project_member (project_id, user_id)
SELECT p.id, u
FROM (SELECT id, row_number() OVER (ORDER BY created, name, id) - 1 AS k FROM project) p,
     unnest(CASE WHEN p.k % 2 = 0 THEN ARRAY['demo', 'alice'] ELSE ARRAY['demo', 'bob'] END) u
WHERE NOT EXISTS (SELECT 1 FROM project_member)
ON CONFLICT DO NOTHING`

// applyDemoSchema creates the tables, the role and the policies
// (idempotent), electrifies the tables and gives pre-existing projects
// their members. Schema lattice must exist (catalog.Bootstrap).
func applyDemoSchema(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, demoSchema); err != nil {
		return fmt.Errorf("create demo schema: %w", err)
	}
	for _, t := range demoTables {
		if err := catalog.Electrify(ctx, conn, t); err != nil {
			return fmt.Errorf("electrify %s: %w", t, err)
		}
	}
	if _, err := conn.Exec(ctx, seedMembersSQL); err != nil {
		return fmt.Errorf("seed project members: %w", err)
	}
	return nil
}

// seedOptions size the generated data. The first project gets Issues issues
// and Comments comments; every other project a tenth of that.
type seedOptions struct {
	Projects int
	Issues   int
	Comments int
}

var seedProjects = []struct{ name, desc string }{
	{"Atlas", "The core product: sync engine, client libraries and the web app."},
	{"Beacon", "Marketing site, docs and the public changelog."},
	{"Compass", "Onboarding, navigation and search across the app."},
	{"Drift", "Mobile apps for iOS and Android."},
	{"Ember", "Internal tools: billing, admin console and support dashboards."},
	{"Fjord", "Data pipeline, exports and analytics."},
	{"Grove", "Design system and component library."},
	{"Harbor", "Infrastructure, deploys and observability."},
}

var (
	seedUsers   = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}
	seedVerbs   = []string{"Fix", "Add", "Improve", "Refactor", "Remove", "Investigate", "Update", "Document", "Support", "Speed up", "Migrate", "Handle errors in", "Validate", "Cache", "Test", "Redesign", "Simplify", "Localize"}
	seedObjects = []string{"the login flow", "the sync status indicator", "kanban drag and drop", "search results", "the comment editor", "the offline queue", "project settings", "notification emails", "keyboard shortcuts", "dark mode", "CSV export", "issue filters", "avatar upload", "API rate limits", "the mobile layout", "the date picker", "webhook retries", "the audit log", "the onboarding tour", "the billing page", "password reset", "file attachments", "the activity feed", "team invitations", "the issue list", "two-factor auth", "the public API", "markdown rendering"}
	seedContext = []string{"", "", "", " on Safari", " for large projects", " after a reconnect", " in the sidebar", " when offline", " for new users", " on slow networks", " in the board view", " under load", " for admins", " on Firefox", " with screen readers"}
	seedDescs   = []string{
		"Steps to reproduce: open the page, wait a few seconds, then try again.",
		"Several customers reported this in the last week.",
		"This blocks the next release.",
		"We should measure before and after the change.",
		"The current behaviour is confusing and not documented anywhere.",
		"A quick fix is possible, but the proper one needs a small refactor.",
		"Expected: it works the same on every browser. Actual: it does not.",
		"See the discussion in the planning meeting for context.",
		"Low risk: the change is behind a feature flag.",
		"Needs a design review before implementation starts.",
		"The logs show a timeout after about thirty seconds.",
		"Check the accessibility guidelines while we are at it.",
		"This regressed after the last dependency upgrade.",
		"Please add a test that covers the edge case.",
		"Related to the performance work planned for next quarter.",
		"Customers on the enterprise plan are affected most.",
	}
	seedComments = []string{
		"I can reproduce this on my machine.",
		"Looks good to me, merging.",
		"Could you add a screenshot?",
		"I think this is a duplicate of an older issue.",
		"Working on it now.",
		"Pushed a fix, please take another look.",
		"This also happens on staging.",
		"Can we split this into two smaller changes?",
		"Nice catch!",
		"Moved to the next sprint.",
		"The fix is deployed, closing soon.",
		"Does this affect mobile too?",
		"I added a test that fails without the fix.",
		"Let's discuss this in tomorrow's standup.",
		"Customer confirmed it works now.",
		"Blocked on the API change.",
		"The numbers look much better after the change.",
		"Not sure this is worth the complexity.",
		"+1, we hit this every week.",
		"Reverted for now, it broke the build.",
	}
)

// demoEmpty reports whether the demo has no project yet.
func demoEmpty(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM project").Scan(&n); err != nil {
		return false, fmt.Errorf("count projects: %w", err)
	}
	return n == 0, nil
}

// seedDemo adds opts.Projects projects with generated issues and comments,
// in one transaction, with set-based statements (generate_series).
func seedDemo(ctx context.Context, conn *pgx.Conn, opts seedOptions) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer tx.Rollback(ctx)
	// pick(a) returns a random element; VOLATILE so it runs per row.
	if _, err := tx.Exec(ctx, `CREATE OR REPLACE FUNCTION pg_temp.pick(a text[]) RETURNS text
		LANGUAGE sql VOLATILE AS 'SELECT a[1 + floor(random() * cardinality(a))::int]'`); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	var existing int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM project").Scan(&existing); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	for i := 0; i < opts.Projects; i++ {
		k := existing + i
		p := seedProjects[k%len(seedProjects)]
		name := p.name
		if k >= len(seedProjects) {
			name = fmt.Sprintf("%s %d", p.name, k/len(seedProjects)+1)
		}
		issues, comments := opts.Issues, opts.Comments
		if i > 0 {
			issues, comments = max(issues/10, 1), comments/10
		}
		// Created one minute apart, in name order, so "oldest first" and
		// "by name" agree on which project is the first.
		created := time.Now().Add(-time.Duration(30*24*60-k) * time.Minute)
		var id string
		err := tx.QueryRow(ctx, `INSERT INTO project (name, description, created, modified)
			VALUES ($1, $2, $3, $3) RETURNING id::text`, name, p.desc, created).Scan(&id)
		if err != nil {
			return fmt.Errorf("seed project: %w", err)
		}
		for _, u := range seedMembers(k) {
			if _, err := tx.Exec(ctx, `INSERT INTO project_member (project_id, user_id) VALUES ($1, $2)`, id, u); err != nil {
				return fmt.Errorf("seed project members: %w", err)
			}
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO issue (project_id, title, description, priority, status, kanbanorder, username, created, modified)
			SELECT $1::uuid,
			       pg_temp.pick($3) || ' ' || pg_temp.pick($4) || pg_temp.pick($5),
			       pg_temp.pick($6) || ' ' || pg_temp.pick($6) ||
			           CASE WHEN random() < 0.5 THEN ' ' || pg_temp.pick($6) ELSE '' END,
			       pg_temp.pick('{none,urgent,high,high,medium,medium,medium,low,low}')::issue_priority,
			       pg_temp.pick('{backlog,backlog,todo,todo,todo,in_progress,in_progress,done,done,canceled}')::issue_status,
			       'a' || lpad(g::text, 8, '0'),
			       pg_temp.pick($7),
			       s.created,
			       s.created + random() * (now() - s.created)
			FROM (SELECT g, now() - random() * interval '180 days' AS created
			      FROM generate_series(1, $2::int) g) s`,
			id, issues, seedVerbs, seedObjects, seedContext, seedDescs, seedUsers)
		if err != nil {
			return fmt.Errorf("seed issues: %w", err)
		}
		if comments == 0 {
			continue
		}
		_, err = tx.Exec(ctx, `
			WITH iss AS (
			    SELECT id, created, row_number() OVER (ORDER BY id) AS rn
			    FROM issue WHERE project_id = $1::uuid
			)
			INSERT INTO comment (issue_id, project_id, body, username, created)
			SELECT i.id, $1::uuid,
			       pg_temp.pick($4) || CASE WHEN random() < 0.3 THEN ' ' || pg_temp.pick($4) ELSE '' END,
			       pg_temp.pick($5),
			       i.created + random() * (now() - i.created)
			FROM (SELECT g, 1 + floor(random() * $3::int)::bigint AS rn
			      FROM generate_series(1, $2::int) g) c
			JOIN iss i USING (rn)`,
			id, comments, issues, seedComments, seedUsers)
		if err != nil {
			return fmt.Errorf("seed comments: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}
