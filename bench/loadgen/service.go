package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// service is a `lattice serve` child process started by the load
// generator (--lattice), so that its CPU and memory are its own.
type service struct {
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	exited chan struct{}
	logf   *os.File
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startService runs BIN serve --insecure on dbURL with extra args, and
// waits until it listens. Its log goes to logPath.
func startService(ctx context.Context, bin, dbURL, dataDir, logPath string, extra []string) (*service, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("service log: %w", err)
	}
	args := append([]string{"serve", "--insecure", "--database-url", dbURL, "--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dataDir, "lattice-data")}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	s := &service{cmd: cmd, exited: make(chan struct{}), logf: logf}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil && !sent {
				sent = true
				addrc <- m[1]
			}
		}
		io.Copy(logf, stderr)
	}()
	go func() { cmd.Wait(); close(s.exited) }()
	select {
	case s.addr = <-addrc:
	case <-s.exited:
		return nil, fmt.Errorf("lattice serve exited before listening (log: %s)", logPath)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("lattice serve did not listen within 60s (log: %s)", logPath)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	return s, nil
}

func (s *service) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.logf.Close()
}

// metrics are the service's own figures, scraped from /metrics.
type metrics struct {
	at          time.Time
	rss         float64 // bytes
	cpu         float64 // seconds
	goroutines  float64
	fds         float64
	connections float64
}

var metricNames = map[string]func(*metrics, float64){
	"process_resident_memory_bytes": func(m *metrics, v float64) { m.rss = v },
	"process_cpu_seconds_total":     func(m *metrics, v float64) { m.cpu = v },
	"go_goroutines":                 func(m *metrics, v float64) { m.goroutines = v },
	"process_open_fds":              func(m *metrics, v float64) { m.fds = v },
	"lattice_connections":           func(m *metrics, v float64) { m.connections = v },
}

func scrape(ctx context.Context, url string) (*metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	m := &metrics{at: time.Now()}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if set := metricNames[name]; set != nil {
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				set(m, v)
			}
		}
	}
	return m, sc.Err()
}
