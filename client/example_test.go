package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/coder/websocket"
	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

// Example subscribes to a shape, waits for its initial data and queries
// it, then watches a live query.
func Example() {
	srv := demoService() // stands in for `lattice serve`
	defer srv.Close()
	ctx := context.Background()

	c, err := client.Open(ctx, ":memory:", &client.Options{URL: srv.URL}) // or a file path
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	go c.Run(ctx) // connects, and reconnects until Close

	sub, err := c.Subscribe(ctx, client.Shape{Table: "todos", Where: "done = $1", Params: []any{false}})
	if err != nil {
		log.Fatal(err)
	}
	if err := sub.Synced(ctx); err != nil {
		log.Fatal(err)
	}
	rows, err := c.Query(ctx, "SELECT id, title FROM todos ORDER BY id")
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rows.Values {
		fmt.Println(r...)
	}

	first := make(chan *client.Rows, 1)
	cancel, err := c.LiveQuery("SELECT count(*) FROM todos", nil, func(rows *client.Rows, err error) {
		if err == nil {
			select {
			case first <- rows:
			default:
			}
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cancel()
	fmt.Println("count:", (<-first).Values[0][0])
	// Output:
	// 1 buy milk
	// 2 write docs
	// count: 2
}

// demoService serves the todos table: it welcomes the client and answers
// each Subscribe with the table's description, a snapshot and Subscribed.
func demoService() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		send := func(m protocol.Down) { ws.Write(ctx, websocket.MessageBinary, m.Encode(nil)) }
		described := false
		for {
			_, frame, err := ws.Read(ctx)
			if err != nil {
				return
			}
			m, err := protocol.DecodeUp(frame)
			if err != nil {
				return
			}
			switch m := m.(type) {
			case *protocol.Hello:
				send(&protocol.Welcome{LogID: "demo", HeadLSN: 42})
			case *protocol.Subscribe:
				if !described {
					send(&protocol.Relation{RelID: 1, Schema: "public", Table: "todos", Columns: []protocol.Column{
						{Name: "id", Type: coltype.Type{Base: coltype.Int8, Name: "bigint"}, NotNull: true},
						{Name: "title", Type: coltype.Type{Base: coltype.TextType, Name: "text"}},
						{Name: "done", Type: coltype.Type{Base: coltype.Bool, Name: "boolean"}},
					}, PK: []int{0}})
					described = true
				}
				row := func(id int64, title string) protocol.Change {
					return protocol.Change{Op: protocol.OpInsert, RelID: 1, Values: []coltype.Value{
						{Kind: coltype.Integer, I: id}, {Kind: coltype.Text, B: []byte(title)}, {Kind: coltype.Integer, I: 0}}}
				}
				if !m.Resume {
					send(&protocol.Txn{LSN: 42, Flags: protocol.FlagFirst | protocol.FlagLast | protocol.FlagSnapshot,
						Changes: []protocol.Change{row(1, "buy milk"), row(2, "write docs")}})
				}
				var ids []string
				for _, s := range m.Shapes {
					ids = append(ids, s.ID)
				}
				send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
			}
		}
	}))
}
