// Command natsd runs a single NATS server with JetStream on for the
// benchmarks (bench/jetstream.sh): the nats-server module in a process of
// its own, so that `lattice serve --log-url` talks to it over loopback as
// it would to a NATS deployment. It prints its client URL once it accepts
// connections and runs until interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 4222, "client port (-1: a free one)")
	store := flag.String("store", "", "JetStream store directory (required)")
	flag.Parse()
	if *store == "" {
		fmt.Fprintln(os.Stderr, "natsd: --store is required")
		os.Exit(2)
	}
	ns, err := server.NewServer(&server.Options{Host: *host, Port: *port, JetStream: true, StoreDir: *store, NoLog: true, NoSigs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		fmt.Fprintln(os.Stderr, "natsd: not ready within 20 s")
		os.Exit(1)
	}
	fmt.Println(ns.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	ns.Shutdown()
	ns.WaitForShutdown()
}
