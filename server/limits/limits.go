// Package limits bounds the work one authenticated client can ask of the
// service: the size of a shape's include tree and of its where clauses
// (Check), and the rate at which a connection's rows are read from
// Postgres (Bucket).
//
// Check is a pure function of a protocol shape: the service calls it
// before it looks up a table or parses a where clause, so a shape over the
// limits costs no more than decoding its frame, however large that frame.
package limits

import (
	"fmt"
	"strings"

	"github.com/latticesync/lattice/protocol"
)

// Limits bound one shape. A limit of zero or less is no limit (the nesting
// of includes stays bounded by protocol.MaxIncludeDepth, which the frame
// decoder enforces).
type Limits struct {
	// Includes bounds the include nodes of one shape, all levels together.
	Includes int
	// Depth bounds how deep includes nest: 1 allows includes of the
	// shape's table but no includes under them.
	Depth int
	// WhereBytes bounds the length in bytes of one where clause: the
	// shape's or an include's.
	WhereBytes int
	// Params bounds the parameters of one where clause.
	Params int
}

// Defaults of `lattice serve`.
const (
	DefaultIncludes   = 64
	DefaultDepth      = 8
	DefaultWhereBytes = 4096
	DefaultParams     = 64
)

// Names of the limits, in Error.Limit.
const (
	LimitIncludes   = "includes"
	LimitDepth      = "include depth"
	LimitWhereBytes = "where bytes"
	LimitParams     = "params"
	Duplicate       = "duplicate include"
)

// Error is a shape that Check refuses.
type Error struct {
	Limit string // one of the Limit* names, or Duplicate
	Msg   string // the message for the client, naming the shape
}

func (e *Error) Error() string { return e.Msg }

// Check checks a shape against l, and refuses duplicate includes: two
// includes of one level with the same table, via, where clause and
// params (their own includes aside) would hold the same rows twice over;
// the client merges them into one. It reports the first problem found,
// walking the include tree depth first, in order.
func Check(sh *protocol.Shape, l Limits) error {
	c := checker{l: l, id: sh.ID}
	if err := c.where(sh.Table, sh.Where, sh.Params); err != nil {
		return err
	}
	return c.level(sh.Table, sh.Include, 1)
}

type checker struct {
	l  Limits
	id string
	n  int // include nodes seen
}

func (c *checker) fail(limit, format string, args ...any) error {
	return &Error{Limit: limit, Msg: fmt.Sprintf("shape %q: ", c.id) + fmt.Sprintf(format, args...)}
}

// where checks one where clause; path names its level in messages.
func (c *checker) where(path, where string, params []*string) error {
	if max := c.l.WhereBytes; max > 0 && len(where) > max {
		return c.fail(LimitWhereBytes, "%s: where clause of %d bytes, more than the service's limit of %d (--max-where-bytes)", path, len(where), max)
	}
	if max := c.l.Params; max > 0 && len(params) > max {
		return c.fail(LimitParams, "%s: %d params, more than the service's limit of %d (--max-where-params)", path, len(params), max)
	}
	return nil
}

func (c *checker) level(path string, incs []protocol.Include, depth int) error {
	if len(incs) == 0 {
		return nil
	}
	if max := c.l.Depth; max > 0 && depth > max {
		return c.fail(LimitDepth, "includes nested more than %d levels deep (%s -> %s), more than the service's limit (--max-include-depth)", max, path, incs[0].Table)
	}
	var seen map[string]int
	if len(incs) > 1 {
		seen = make(map[string]int, min(len(incs), 16))
	}
	for i := range incs {
		in := &incs[i]
		c.n++
		if max := c.l.Includes; max > 0 && c.n > max {
			return c.fail(LimitIncludes, "more than %d includes, the service's limit (--max-includes)", max)
		}
		p := path + " -> " + in.Table
		if seen != nil {
			k := dupKey(in)
			if j, ok := seen[k]; ok {
				return c.fail(Duplicate, "include %s (number %d of its level) repeats include number %d: the same table, via, where clause and params; merge the two into one", p, i+1, j+1)
			}
			seen[k] = i
		}
		if err := c.where("include "+p, in.Where, in.Params); err != nil {
			return err
		}
		if err := c.level(p, in.Include, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// dupKey identifies an include by what selects its rows: table, via,
// where clause (spaces at the ends aside) and params.
func dupKey(in *protocol.Include) string {
	var b strings.Builder
	for _, s := range []string{in.Table, in.Via, strings.TrimSpace(in.Where)} {
		fmt.Fprintf(&b, "%d:%s", len(s), s)
	}
	for _, p := range in.Params {
		if p == nil {
			b.WriteString("n")
		} else {
			fmt.Fprintf(&b, "%d:%s", len(*p), *p)
		}
	}
	return b.String()
}
