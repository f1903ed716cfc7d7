package main

import (
	"fmt"
	"io"
	"strings"

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
		// Load errors already name the file (and line); validation
		// problems name only the field.
		if msg := p.Error(); strings.HasPrefix(msg, args[1]) {
			fmt.Fprintln(stdout, msg)
		} else {
			fmt.Fprintf(stdout, "%s: %s\n", args[1], msg)
		}
	}
	return 1
}
