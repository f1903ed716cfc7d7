package bench

import (
	"errors"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// Fields after the name: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime ...
	const tail = " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 9 9 20 0 12 0 1000 1234567 300"
	for _, tc := range []struct {
		name string
		stat string
		want time.Duration
		bad  bool
	}{
		{"plain name", "4242 (cascade)" + tail, 3250 * time.Millisecond, false},
		{"name with spaces and parens", "4242 (a (b) c) d)" + tail, 3250 * time.Millisecond, false},
		{"zero", "1 (x) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0", 0, false},
		{"no name", "4242 cascade S 1", 0, true},
		{"too short", "4242 (cascade) S 1 2 3", 0, true},
		{"not a number", "4242 (cascade) S 1 2 3 0 -1 0 0 0 0 0 x 75 0 0", 0, true},
	} {
		got, err := parseStatCPU([]byte(tc.stat))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	const status = "Name:\tcascade\nState:\tS (sleeping)\nVmPeak:\t  900000 kB\nVmRSS:\t   51200 kB\nThreads:\t12\n"
	if got, err := parseStatusRSS([]byte(status)); err != nil || got != 50<<20 {
		t.Errorf("got %d, %v; want %d", got, err, 50<<20)
	}
	if got, err := parseStatusRSS([]byte("Name:\tzombie\nState:\tZ (zombie)\n")); err != nil || got != 0 {
		t.Errorf("zombie: got %d, %v; want 0, nil", got, err)
	}
	if _, err := parseStatusRSS([]byte("VmRSS:\t12 MB\n")); err == nil {
		t.Error("VmRSS in MB: no error")
	}
}

func TestReadProcSelf(t *testing.T) {
	a, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU so the second reading can only be later.
	for x, end := 0, time.Now().Add(30*time.Millisecond); time.Now().Before(end); x++ {
		_ = x
	}
	b, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	if a.RSS <= 0 || b.CPU < a.CPU || !b.At.After(a.At) {
		t.Errorf("readings %+v then %+v", a, b)
	}
	if r := cpuRate(a, b); r < 0 || r > 64 {
		t.Errorf("cpu rate %v", r)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Error("ReadProc of a pid that cannot exist: no error")
	}
}

func TestCPURate(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := ProcSample{At: t0, CPU: time.Second}
	b := ProcSample{At: t0.Add(2 * time.Second), CPU: 2500 * time.Millisecond}
	if got := cpuRate(a, b); got != 0.75 {
		t.Errorf("1.5 CPU-seconds in 2 s: %v cores, want 0.75", got)
	}
	if got := cpuRate(b, b); got != 0 {
		t.Errorf("no time passed: %v, want 0", got)
	}
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		list string
		want int
		bad  bool
	}{
		{"0", 1, false},
		{"1,3", 2, false},
		{"0-3,6", 5, false},
		{"0-1,1", 2, false},
		{"", 0, true},
		{"a", 0, true},
		{"3-1", 0, true},
		{"-1", 0, true},
	} {
		got, err := ParseCPUList(tc.list)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d, error %v", tc.list, got, err, tc.want, tc.bad)
		}
		if err != nil && !errors.Is(err, ErrBadOption) {
			t.Errorf("%q: %v is not ErrBadOption", tc.list, err)
		}
	}
}

func TestParseHostBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	const stat = "cpu  1000 20 300 90000 50 4 6 70 500 0\ncpu0 500 10 150 45000 25 2 3 35 250 0\nintr 1 2 3\n"
	got, err := parseHostBusy([]byte(stat))
	if want := 1400 * time.Second / userHZ; err != nil || got != want {
		t.Errorf("got %v, %v; want %v (idle, iowait and guest left out)", got, err, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 x 4 5 6 7 8\n", "cpu 1 2 3\n"} {
		if _, err := parseHostBusy([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := readHostBusy(); err != nil {
		t.Errorf("this host's /proc/stat: %v", err)
	}
}
