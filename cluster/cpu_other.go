//go:build !unix

package cluster

import "time"

// processCPU is not measured on this platform: CPU is left to LoadFunc.
func processCPU() (time.Duration, bool) { return 0, false }
