package config

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func FuzzSlow(f *testing.F) {
	example, _ := os.ReadFile("../cascade.example.yaml")
	f.Add(example)
	for _, tt := range loadErrorCases {
		f.Add([]byte(tt.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		timer := time.AfterFunc(2*time.Second, func() { panic(fmt.Sprintf("slow: %q", data)) })
		defer timer.Stop()
		path := writeFile(t, string(data))
		Load(LoadOptions{File: path})
	})
}
