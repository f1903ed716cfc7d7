package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ). Linux
// fixes it at 100 on every architecture Go supports (proc(5)); Go cannot
// ask sysconf(_SC_CLK_TCK) without cgo.
const userHZ = 100

// ProcSample is one reading of a process's CPU time and memory from /proc.
type ProcSample struct {
	PID int
	At  time.Time
	// CPU is user plus system time of all the process's threads.
	CPU time.Duration
	// RSS is the resident set size in bytes (VmRSS).
	RSS int64
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status; pid 0 reads this
// process (/proc/self).
func ReadProc(pid int) (ProcSample, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	s := ProcSample{PID: pid, At: time.Now()}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	if s.RSS, err = parseStatusRSS(status); err != nil {
		return s, fmt.Errorf("%s/status: %w", dir, err)
	}
	return s, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15, proc(5)) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", truncate(b))
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("cpu time %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parseStatusRSS returns VmRSS from /proc/<pid>/status in bytes. A process
// that has exited (a zombie) has no VmRSS line and reads as 0.
func parseStatusRSS(b []byte) (int64, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", strings.TrimSpace(line), err)
		}
		return kb << 10, nil
	}
	return 0, nil
}

func truncate(b []byte) []byte { return b[:min(len(b), 80)] }

// readHostBusy returns the CPU time all CPUs of the host have spent busy,
// from the first line of /proc/stat.
func readHostBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("host cpu: %w", err)
	}
	return parseHostBusy(b)
}

// parseHostBusy sums user, nice, system, irq, softirq and steal of the
// "cpu" line of /proc/stat (proc(5)); guest time is already in user.
func parseHostBusy(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q", truncate(line))
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc/stat: field %d %q", i, f[i])
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuRate is the CPU the process used between two samples, in cores
// (CPU-seconds per second).
func cpuRate(a, b ProcSample) float64 {
	el := b.At.Sub(a.At).Seconds()
	if el <= 0 {
		return 0
	}
	return (b.CPU - a.CPU).Seconds() / el
}

// procSet samples several processes (the server's) at once.
type procSet []int

// read samples every pid; the CPU times and RSS are summed into one sample.
func (ps procSet) read() (ProcSample, error) {
	sum := ProcSample{At: time.Now()}
	for _, pid := range ps {
		s, err := ReadProc(pid)
		if err != nil {
			return sum, err
		}
		sum.CPU += s.CPU
		sum.RSS += s.RSS
	}
	return sum, nil
}

// ParseCPUList parses a taskset/cpuset CPU list ("0", "1,3", "0-3,6") and
// returns how many CPUs it names.
func ParseCPUList(list string) (int, error) {
	seen := map[int]bool{}
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, fmt.Errorf("%w: CPU list %q: %q is not a CPU number", ErrBadOption, list, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("%w: CPU list %q: bad range %q", ErrBadOption, list, part)
			}
		}
		for c := a; c <= b; c++ {
			seen[c] = true
		}
	}
	return len(seen), nil
}

// tasksetPath finds taskset (Debian package util-linux).
func tasksetPath() (string, error) {
	p, err := exec.LookPath("taskset")
	if err != nil {
		return "", fmt.Errorf("%w: taskset not found (install util-linux): %w", ErrBadOption, err)
	}
	return p, nil
}

// pinProcess sets the CPU affinity of every thread of pid (0: this
// process) with `taskset -a -p -c`. Threads created later inherit it.
func pinProcess(ctx context.Context, cpus string, pid int) error {
	ts, err := tasksetPath()
	if err != nil {
		return err
	}
	if pid == 0 {
		pid = os.Getpid()
	}
	out, err := exec.CommandContext(ctx, ts, "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pin pid %d to CPUs %s: %w: %s", pid, cpus, err, bytes.TrimSpace(out))
	}
	return nil
}
