// Command cascade is the Cascade WebRTC edge/cluster relay: one binary for
// every role. `cascade serve` runs a media node; `cascade config validate`
// checks a configuration file; `cascade version` prints the version.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: cascade <command> [flags]

commands:
  serve                 run a media node (see cascade serve -h)
  bench                 load a node with WebRTC publishers and viewers and measure it (see cascade bench -h)
  config validate FILE  check a configuration file and print every problem
  version               print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		if err := serve(args[1:], stdout, stderr); err != nil {
			if errors.Is(err, errUsage) {
				return 2
			}
			fmt.Fprintln(stderr, "cascade:", err)
			return 1
		}
		return 0
	case "bench":
		return benchCommand(args[1:], stdout, stderr)
	case "config":
		return configCommand(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "cascade", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cascade: unknown command %q\n%s", args[0], usage)
		return 2
	}
}
