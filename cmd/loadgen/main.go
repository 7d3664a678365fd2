// Command loadgen drives a running livecart server from a separate process and reports
// what it measured. Modes: media (WHIP publisher + WHEP viewers), sale (buyers holding
// and checking out), ws (websocket viewers and open-loop events), pings (what a client's
// app-level ping, or the server's heartbeats, cost the server). Every mode is bounded
// in count and time and stops by itself.
package main

import (
	"fmt"
	"os"
)

var modes = map[string]func(args []string) error{
	"media": runMedia,
	"sale":  runSale,
	"ws":    runWS,
	"pings": runPings,
}

func main() {
	if len(os.Args) < 2 || modes[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: loadgen media|sale|ws|pings [flags]  (loadgen MODE -h for flags)")
		os.Exit(2)
	}
	if err := modes[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
