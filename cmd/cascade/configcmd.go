package main

import (
	"fmt"
	"io"

	"github.com/cascade-rtc/cascade/config"
)

// configCommand runs `cascade config validate FILE`: it prints every
// problem in FILE, one per line, and exits 1 if there is any.
func configCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "validate" {
		fmt.Fprintln(stderr, "usage: cascade config validate FILE")
		return 2
	}
	problems := config.CheckFile(args[1])
	if len(problems) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", args[1])
		return 0
	}
	for _, p := range problems {
		fmt.Fprintf(stdout, "%s: %v\n", args[1], p)
	}
	return 1
}
