// Package failpoint injects faults at named points of the write path and
// the stream, for the fault campaign (cmd/lattice's TestFaultCampaign) and
// tests. It is off unless the environment variable LATTICE_FAILPOINTS is
// set; the variable is read once, at the first Hit, and a point costs one
// atomic load when it is off.
//
// LATTICE_FAILPOINTS is a comma-separated list of point=action, where the
// action is taken at the point's Nth hit ("exit#3"), at every hit from the
// Nth on ("sleep(20)#3+"), or at every hit (no #):
//
//	exit      the process exits at once (status 86), like a SIGKILL there:
//	          nothing is flushed, no goodbye is sent
//	sleep(MS) the point waits MS milliseconds
//	error     Hit returns ErrInjected: the caller fails as on an I/O error
//	cut       Hit returns ErrCut: a connection writer sends part of the
//	          frame and closes the connection (see Conn)
//
// Points are named package/what, e.g. "client/before-send"; the list of
// points is in README.md ("Fault campaign").
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Env is the environment variable holding the fault points.
const Env = "LATTICE_FAILPOINTS"

// ExitCode is the status a process exits with at an exit action.
const ExitCode = 86

var (
	// ErrInjected is returned by Hit at an error action.
	ErrInjected = errors.New("failpoint: injected error")
	// ErrCut is returned by Hit at a cut action.
	ErrCut = errors.New("failpoint: connection cut")
)

type kind int

const (
	actExit kind = iota + 1
	actSleep
	actError
	actCut
)

var actNames = map[kind]string{actExit: "exit", actSleep: "sleep", actError: "error", actCut: "cut"}

type point struct {
	act   kind
	sleep time.Duration
	nth   int64 // 0: every hit
	from  bool  // every hit from the nth on
	hits  atomic.Int64
}

// Set is a parsed LATTICE_FAILPOINTS value.
type Set struct {
	points map[string]*point
}

// Parse parses a LATTICE_FAILPOINTS value.
func Parse(spec string) (*Set, error) {
	s := &Set{points: map[string]*point{}}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, act, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("failpoint %q: want point=action", item)
		}
		p := &point{}
		if a, n, ok := strings.Cut(act, "#"); ok {
			act = a
			if strings.HasSuffix(n, "+") {
				p.from, n = true, strings.TrimSuffix(n, "+")
			}
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("failpoint %q: bad hit number %q", item, n)
			}
			p.nth = v
		}
		switch {
		case act == "exit":
			p.act = actExit
		case act == "error":
			p.act = actError
		case act == "cut":
			p.act = actCut
		case strings.HasPrefix(act, "sleep(") && strings.HasSuffix(act, ")"):
			ms, err := strconv.Atoi(act[len("sleep(") : len(act)-1])
			if err != nil || ms < 0 {
				return nil, fmt.Errorf("failpoint %q: bad sleep", item)
			}
			p.act, p.sleep = actSleep, time.Duration(ms)*time.Millisecond
		default:
			return nil, fmt.Errorf("failpoint %q: unknown action %q (exit, sleep(MS), error, cut)", item, act)
		}
		s.points[name] = p
	}
	return s, nil
}

// Hit passes point name: it takes the point's action when due, and returns
// ErrInjected or ErrCut for those actions, nil otherwise.
func (s *Set) Hit(name string) error {
	if s == nil {
		return nil
	}
	p := s.points[name]
	if p == nil {
		return nil
	}
	n := p.hits.Add(1)
	if p.nth != 0 && (n < p.nth || (!p.from && n != p.nth)) {
		return nil
	}
	// Each fault is logged on stderr, for the campaign's traces.
	fmt.Fprintf(os.Stderr, "failpoint %s: %s (hit %d)\n", name, actNames[p.act], n)
	switch p.act {
	case actExit:
		os.Exit(ExitCode)
	case actSleep:
		time.Sleep(p.sleep)
	case actError:
		return fmt.Errorf("%s (hit %d): %w", name, n, ErrInjected)
	case actCut:
		return fmt.Errorf("%s (hit %d): %w", name, n, ErrCut)
	}
	return nil
}

// The process's points, from the environment: the one piece of global
// state of the package, so that a point can sit anywhere without plumbing.
var (
	enabled atomic.Bool
	envSet  *Set
)

func init() {
	// Read once; an unparsable value stops the process loudly: a fault
	// campaign silently running without its faults would prove nothing.
	spec := os.Getenv(Env)
	if spec == "" {
		return
	}
	s, err := Parse(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	envSet = s
	enabled.Store(true)
}

// Hit passes point name of the process's points (LATTICE_FAILPOINTS).
func Hit(name string) error {
	if !enabled.Load() {
		return nil
	}
	return envSet.Hit(name)
}
