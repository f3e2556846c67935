package server_test

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
)

// TestSnapshotJoinsStream subscribes clients while a writer keeps updating
// rows: every client must end equal to Postgres, and no live query may see
// a counter go backwards (which a transaction applied twice, or applied
// over a newer snapshot row, would show).
func TestSnapshotJoinsStream(t *testing.T) {
	e := newEnv(t, `CREATE TABLE counters (id int PRIMARY KEY, grp int NOT NULL, n bigint NOT NULL);
		INSERT INTO counters SELECT i, i % 4, 0 FROM generate_series(1, 40) i`, "counters")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(context.Background(), e.dbURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		r := rand.New(rand.NewSource(7))
		for ctx.Err() == nil {
			// Increment a few counters, and sometimes move one between groups.
			a, b := 1+r.Intn(40), 1+r.Intn(40)
			_, err := conn.Exec(context.Background(), `UPDATE counters SET n = n + 1, grp = CASE WHEN id = $2 THEN (grp + 1) % 4 ELSE grp END WHERE id IN ($1, $2)`, a, b)
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	type observer struct {
		c    *client.Client
		mu   sync.Mutex
		last map[int64]int64
		bad  string
		grp  int
	}
	var obs []*observer
	for i := 0; i < 6; i++ {
		time.Sleep(150 * time.Millisecond)
		o := &observer{last: map[int64]int64{}, grp: i % 4}
		o.c, _ = e.clientAt(":memory:")
		// Shapes that overlap on the same connection too.
		e.subscribe(o.c, client.Shape{Table: "counters", Where: "grp = $1", Params: []any{o.grp}})
		if i%2 == 0 {
			e.subscribe(o.c, client.Shape{Table: "counters", Where: "grp IN ($1, $2)", Params: []any{(o.grp + 1) % 4, o.grp}})
		}
		cancel, err := o.c.LiveQuery("SELECT id, n FROM counters", nil, func(r *client.Rows, err error) {
			if err != nil {
				return
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, row := range r.Values {
				id, n := row[0].(int64), row[1].(int64)
				if prev, ok := o.last[id]; ok && n < prev && o.bad == "" {
					o.bad = fmt.Sprintf("counter %d went back from %d to %d", id, prev, n)
				}
				o.last[id] = n
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		obs = append(obs, o)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	for i, o := range obs {
		where := "grp = " + strconv.Itoa(o.grp)
		if i%2 == 0 {
			where = fmt.Sprintf("grp IN (%d, %d)", o.grp, (o.grp+1)%4)
		}
		waitEqual(t, e, o.c, "SELECT id, grp, n FROM counters WHERE "+where+" ORDER BY id", "SELECT id, grp, n FROM counters ORDER BY id")
		o.mu.Lock()
		if o.bad != "" {
			t.Errorf("client %d: %s", i, o.bad)
		}
		o.mu.Unlock()
	}
}
