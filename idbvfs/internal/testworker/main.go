//go:build js

// Command testworker is the wasm the browser tests run in a dedicated Web
// Worker: it opens SQLite on the idb VFS and answers messages from the page
// ({id, op, ...} -> {id, ok, result | error}). It is test scaffolding for
// idbvfs and the speedtest benchmark, not the Lattice worker.
package main

import (
	"context"
	"errors"
	"fmt"
	"syscall/js"
	"time"

	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/vfs/memdb"

	"github.com/latticesync/lattice/idbvfs"
)

type worker struct {
	reqs chan js.Value
	db   *sqlite3.Conn
	name string
	vfs  *idbvfs.VFS
	nvfs int
}

func main() {
	w := &worker{reqs: make(chan js.Value, 1024)}
	// The callback only queues the message; one goroutine serves them in
	// order (SQLite calls block on IndexedDB and must not run in a callback).
	onMessage := js.FuncOf(func(this js.Value, args []js.Value) any {
		select {
		case w.reqs <- args[0].Get("data"):
		default:
			js.Global().Call("postMessage", map[string]any{"event": "dropped"})
		}
		return nil
	})
	self := js.Global()
	self.Set("onmessage", onMessage)
	// Messages that arrived before Go started were queued by worker.js.
	if q := self.Get("pending"); q.Type() == js.TypeObject {
		for i := range q.Length() {
			w.reqs <- q.Index(i)
		}
		self.Set("pending", js.Null())
	}
	self.Call("postMessage", map[string]any{"event": "ready"})
	for req := range w.reqs {
		w.serve(req)
	}
}

func (w *worker) serve(req js.Value) {
	id := req.Get("id")
	start := time.Now()
	res, err := w.handle(req)
	reply := map[string]any{"id": id, "ok": err == nil, "ms": float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		e := map[string]any{"message": err.Error()}
		var se *sqlite3.Error
		if errors.As(err, &se) {
			e["code"] = int(se.ExtendedCode())
			e["primary"] = int(se.Code())
		}
		reply["error"] = e
	} else {
		reply["result"] = res
	}
	js.Global().Call("postMessage", reply)
}

func str(v js.Value, key string) string {
	if x := v.Get(key); x.Type() == js.TypeString {
		return x.String()
	}
	return ""
}

func num(v js.Value, key string) int64 {
	if x := v.Get(key); x.Type() == js.TypeNumber {
		return int64(x.Float())
	}
	return 0
}

func (w *worker) handle(req js.Value) (any, error) {
	switch op := str(req, "op"); op {
	case "open":
		return w.open(req)
	case "close":
		if w.db == nil {
			return nil, nil
		}
		err := w.db.Close()
		w.db = nil
		return nil, err
	case "exec":
		if w.db == nil {
			return nil, errors.New("no database open")
		}
		if err := w.db.Exec(str(req, "sql")); err != nil {
			return nil, err
		}
		return map[string]any{"changes": w.db.Changes()}, nil
	case "query":
		return w.query(str(req, "sql"))
	case "writeLoop":
		return w.writeLoop(num(req, "from"), num(req, "to"), num(req, "rowBytes"))
	case "stats":
		if w.vfs == nil {
			return nil, errors.New("no idb database open")
		}
		st := w.vfs.Stats(w.name)
		return map[string]any{
			"loads": st.Loads, "blocksLoaded": st.BlocksLoaded, "commits": st.Commits,
			"blocksWritten": st.BlocksWritten, "cachedBlocks": st.CachedBlocks,
			"cachedBytes": st.CachedBytes, "dirtyBlocks": st.DirtyBlocks,
		}, nil
	case "delete":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return nil, idbvfs.Delete(ctx, str(req, "name"))
	default:
		return nil, fmt.Errorf("unknown op %q", op)
	}
}

func (w *worker) open(req js.Value) (any, error) {
	if w.db != nil {
		w.db.Close()
		w.db = nil
	}
	name := str(req, "name")
	vfsName, v := idbvfs.Name, idbvfs.Default()
	if o := req.Get("options"); o.Type() == js.TypeObject && str(o, "vfs") == "memdb" {
		// SQLite in memory: the engine's speed without storage, for comparison.
		db, err := sqlite3.Open("file:/" + name + "?vfs=memdb")
		if err != nil {
			return nil, err
		}
		w.db, w.name, w.vfs = db, name, nil
		return map[string]any{"vfs": "memdb"}, nil
	} else if o.Type() == js.TypeObject {
		w.nvfs++
		vfsName = fmt.Sprintf("idbtest%d", w.nvfs)
		v = idbvfs.Register(vfsName, idbvfs.Options{
			BlockSize:       num(o, "blockSize"),
			CacheBytes:      num(o, "cacheBytes"),
			PrefetchBytes:   num(o, "prefetchBytes"),
			ReadAheadBlocks: num(o, "readAheadBlocks"),
			Durability:      str(o, "durability"),
		})
	}
	db, err := sqlite3.Open("file:" + name + "?vfs=" + vfsName)
	if err != nil {
		return nil, err
	}
	w.db, w.name, w.vfs = db, name, v
	return map[string]any{"vfs": vfsName}, nil
}

func (w *worker) query(sql string) (any, error) {
	if w.db == nil {
		return nil, errors.New("no database open")
	}
	st, _, err := w.db.Prepare(sql)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var rows []any
	for st.Step() {
		row := make([]any, st.ColumnCount())
		for i := range row {
			switch st.ColumnType(i) {
			case sqlite3.INTEGER:
				row[i] = float64(st.ColumnInt64(i))
			case sqlite3.FLOAT:
				row[i] = st.ColumnFloat(i)
			case sqlite3.TEXT:
				row[i] = st.ColumnText(i)
			case sqlite3.BLOB:
				b := st.ColumnRawBlob(i)
				u := js.Global().Get("Uint8Array").New(len(b))
				js.CopyBytesToJS(u, b)
				row[i] = u
			default:
				row[i] = nil
			}
		}
		rows = append(rows, row)
	}
	if err := st.Err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// writeLoop inserts rows from..to-1 into t(id, v), one transaction each,
// and reports every commit with a {event: 'committed', id} message, so a
// test can kill the browser mid-loop and check what survived.
func (w *worker) writeLoop(from, to, rowBytes int64) (any, error) {
	if w.db == nil {
		return nil, errors.New("no database open")
	}
	st, _, err := w.db.Prepare(`INSERT INTO t(id, v) VALUES (?, randomblob(?))`)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	for i := from; i < to; i++ {
		st.BindInt64(1, i)
		st.BindInt64(2, rowBytes)
		if err := st.Exec(); err != nil {
			return nil, fmt.Errorf("insert %d: %w", i, err)
		}
		js.Global().Call("postMessage", map[string]any{"event": "committed", "id": i})
	}
	return map[string]any{"done": to - from}, nil
}
