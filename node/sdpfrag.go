package node

import (
	"fmt"
	"strings"

	"github.com/pion/ice/v4"
)

// sdpFrag is a parsed trickle-ice-sdpfrag body (RFC 8840 §9): ICE
// credentials and candidates, each candidate tagged with its media
// section's mid.
type sdpFrag struct {
	ufrag, pwd      string
	candidates      []fragCandidate
	endOfCandidates bool
}

type fragCandidate struct {
	mid       string
	candidate string // the attribute value, without "a="
}

// maxFragLines bounds the work one PATCH body can cause.
const maxFragLines = 256

// parseSDPFrag parses a trickle-ice-sdpfrag body. It accepts CRLF or LF
// line ends and ignores attributes it does not use.
func parseSDPFrag(body []byte) (sdpFrag, error) {
	var f sdpFrag
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	if len(lines) > maxFragLines {
		return f, fmt.Errorf("fragment has %d lines, more than %d", len(lines), maxFragLines)
	}
	mid := ""
	for i, line := range lines {
		line = strings.TrimRight(line, "\r ")
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != '=' {
			return f, fmt.Errorf("line %d: %q is not an SDP line", i+1, line)
		}
		switch {
		case line[0] == 'm':
			mid = ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = line[len("a=mid:"):]
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = line[len("a=ice-ufrag:"):]
			if !iceChars(f.ufrag, 4) {
				return f, fmt.Errorf("line %d: ice-ufrag must be 4 to 256 ice-chars", i+1)
			}
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = line[len("a=ice-pwd:"):]
			if !iceChars(f.pwd, 22) {
				return f, fmt.Errorf("line %d: ice-pwd must be 22 to 256 ice-chars", i+1)
			}
		case strings.HasPrefix(line, "a=candidate:"):
			value := line[len("a="):]
			if _, err := ice.UnmarshalCandidate(value); err != nil {
				return f, fmt.Errorf("line %d: bad candidate: %w", i+1, err)
			}
			f.candidates = append(f.candidates, fragCandidate{mid: mid, candidate: value})
		case line == "a=end-of-candidates":
			f.endOfCandidates = true
		}
	}
	if (f.ufrag == "") != (f.pwd == "") {
		return f, fmt.Errorf("fragment must carry both ice-ufrag and ice-pwd, or neither")
	}
	return f, nil
}

// iceChars reports whether s is min to 256 ice-chars (RFC 8839 §5.4:
// ALPHA / DIGIT / "+" / "/").
func iceChars(s string, min int) bool {
	if len(s) < min || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
