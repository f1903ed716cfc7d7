package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writeFile writes a config file into a fresh directory and returns its path.
func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cascade.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPrecedence(t *testing.T) {
	t.Parallel()
	file := writeFile(t, `
region: file
dev: true
log:
  level: debug
http:
  listen: 0.0.0.0:9000
  allowed_origins: [https://file.example]
media:
  udp_port: 9001
  ice_tcp: false
  ice_servers:
    - urls: [turn:file.example]
      username: u
      credential: c
`)
	environ := []string{
		"PATH=/bin",
		"CASCADE_REGION=env",
		"CASCADE_DEV=false",
		"CASCADE_LOG_LEVEL=warn",
		"CASCADE_HTTP_ALLOWED_ORIGINS=https://env.example, https://env2.example",
		"CASCADE_MEDIA_UDP_PORT=9002",
		"CASCADE_MEDIA_ICE_TCP=true",
		"CASCADE_MEDIA_ICE_SERVERS=stun:env.example,stun:env2.example",
	}
	overrides := map[string]string{
		"region":               "flag",
		"dev":                  "true",
		"log.level":            "error",
		"http.listen":          "127.0.0.2:9003",
		"http.allowed_origins": "https://flag.example",
		"media.udp_port":       "9004",
	}
	layers := []LoadOptions{
		{},
		{File: file},
		{File: file, Environ: environ},
		{File: file, Environ: environ, Overrides: overrides},
	}
	var loaded []Config
	for _, opts := range layers {
		cfg, err := Load(opts)
		if err != nil {
			t.Fatalf("Load(%+v): %v", opts, err)
		}
		loaded = append(loaded, cfg)
	}

	tests := []struct {
		field string
		get   func(Config) any
		// want holds the value after defaults, file, environment, overrides.
		want [4]any
	}{
		{"region", func(c Config) any { return c.Region }, [4]any{"local", "file", "env", "flag"}},
		{"dev", func(c Config) any { return c.Dev }, [4]any{false, true, false, true}},
		{"log.level", func(c Config) any { return c.Log.Level }, [4]any{"info", "debug", "warn", "error"}},
		{"http.listen set by file and flag only", func(c Config) any { return c.HTTP.Listen },
			[4]any{"127.0.0.1:8080", "0.0.0.0:9000", "0.0.0.0:9000", "127.0.0.2:9003"}},
		{"http.allowed_origins", func(c Config) any { return c.HTTP.AllowedOrigins }, [4]any{
			[]string(nil),
			[]string{"https://file.example"},
			[]string{"https://env.example", "https://env2.example"},
			[]string{"https://flag.example"},
		}},
		{"media.udp_port", func(c Config) any { return c.Media.UDPPort }, [4]any{8443, 9001, 9002, 9004}},
		{"media.ice_tcp", func(c Config) any { return c.Media.ICETCP }, [4]any{true, false, true, true}},
		{"media.ice_servers", func(c Config) any { return c.Media.ICEServers }, [4]any{
			[]ICEServer(nil),
			[]ICEServer{{URLs: []string{"turn:file.example"}, Username: "u", Credential: "c"}},
			[]ICEServer{{URLs: []string{"stun:env.example"}}, {URLs: []string{"stun:env2.example"}}},
			[]ICEServer{{URLs: []string{"stun:env.example"}}, {URLs: []string{"stun:env2.example"}}},
		}},
		{"data_dir set nowhere", func(c Config) any { return c.DataDir }, [4]any{"./data", "./data", "./data", "./data"}},
	}
	names := []string{"defaults", "file", "environment", "overrides"}
	for _, tt := range tests {
		for i, want := range tt.want {
			if got := tt.get(loaded[i]); !reflect.DeepEqual(got, want) {
				t.Errorf("%s after %s = %#v, want %#v", tt.field, names[i], got, want)
			}
		}
	}
}

func TestLoadEnvironment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ []string
		get     func(Config) any
		want    any
	}{
		{"unknown CASCADE_ variable is ignored", []string{"CASCADE_NO_SUCH_OPTION=1"},
			func(c Config) any { return c.Region }, "local"},
		{"variable without the prefix is ignored", []string{"MEDIA_UDP_PORT=1", "REGION=x"},
			func(c Config) any { return c.Media.UDPPort }, 8443},
		{"empty value counts as unset", []string{"CASCADE_REGION=", "CASCADE_MEDIA_UDP_PORT="},
			func(c Config) any { return c.Region + " " + c.Log.Level }, "local info"},
		{"later duplicate wins", []string{"CASCADE_REGION=a", "CASCADE_REGION=b"},
			func(c Config) any { return c.Region }, "b"},
		{"value may contain =", []string{"CASCADE_PUBLISH_TOKEN=a=b="},
			func(c Config) any { return c.Publish.Token }, "a=b="},
		{"dev_token is not dev", []string{"CASCADE_DEV_TOKEN=x"},
			func(c Config) any { return [2]any{c.Dev, c.DevToken} }, [2]any{false, "x"}},
		{"list is trimmed and skips empty items", []string{"CASCADE_MEDIA_PUBLIC_IPS= 192.0.2.1 ,, 192.0.2.2,"},
			func(c Config) any { return c.Media.PublicIPs }, []string{"192.0.2.1", "192.0.2.2"}},
		{"ice servers from URLs", []string{"CASCADE_MEDIA_ICE_SERVERS=stun:a:3478"},
			func(c Config) any { return c.Media.ICEServers }, []ICEServer{{URLs: []string{"stun:a:3478"}}}},
		{"bool accepts 1", []string{"CASCADE_PUBLISH_TAKEOVER=0", "CASCADE_DEV=1"},
			func(c Config) any { return [2]bool{c.Publish.Takeover, c.Dev} }, [2]bool{false, true}},
		{"int", []string{"CASCADE_PLAY_MAX_VIEWERS=250"},
			func(c Config) any { return c.Play.MaxViewers }, 250},
		{"nested string", []string{"CASCADE_HTTP_TLS_CERT_FILE=/etc/cert.pem"},
			func(c Config) any { return c.HTTP.TLSCertFile }, "/etc/cert.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(LoadOptions{Environ: tt.environ})
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestLoadOverrideEmptyValueIsSet(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{
		Environ:   []string{"CASCADE_HTTP_ALLOWED_ORIGINS=https://a", "CASCADE_PUBLISH_TOKEN=t"},
		Overrides: map[string]string{"http.allowed_origins": "", "publish.token": ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.HTTP.AllowedOrigins) != 0 || cfg.Publish.Token != "" {
		t.Errorf("allowed_origins %q, publish.token %q: want both cleared", cfg.HTTP.AllowedOrigins, cfg.Publish.Token)
	}
}

// loadErrorCases are YAML files Load rejects; FuzzLoad seeds from them too.
var loadErrorCases = []struct {
	name string
	yaml string
	is   error
	// want are substrings of the error after the file name.
	want []string
}{
	{"unknown top-level key", "region: x\nnodeid: y\n", ErrUnknownField, []string{`:2: unknown field "nodeid"`}},
	{"unknown nested key", "media:\n  udpport: 9000\n", ErrUnknownField, []string{`:2: unknown field "media.udpport"`}},
	{"unknown key in a list item", "media:\n  ice_servers:\n    - urls: [stun:a]\n    - url: [stun:b]\n",
		ErrUnknownField, []string{`:4: unknown field "media.ice_servers[1].url"`}},
	{"unknown key through a merge", "log: &l {level: info}\nhttp:\n  <<: *l\n",
		ErrUnknownField, []string{`unknown field "http.level"`}},
	{"every unknown key", "a: 1\nlog:\n  b: 2\n", ErrUnknownField,
		[]string{`:1: unknown field "a"`, `:3: unknown field "log.b"`}},
	{"syntax error", "region: local\nlog:\n\tlevel: debug\n", ErrSyntax,
		[]string{":3: invalid YAML: found character that cannot start any token"}},
	{"wrong type", "log:\n  level: info\nmedia:\n  udp_port: abc\n", ErrBadValue,
		[]string{":4: invalid value: cannot unmarshal !!str `abc` into int"}},
	{"list where a scalar belongs", "region: [a, b]\n", ErrBadValue, []string{":1: invalid value"}},
	{"top level is not a mapping", "just text\n", ErrBadValue, []string{":1: invalid value"}},
	{"two documents", "region: a\n---\nregion: b\n", ErrSyntax, []string{":2: invalid YAML: more than one document"}},
	{"alias cycle", "media:\n  ice_servers: &a [*a]\n", nil, []string{"cascade.yaml"}},
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range loadErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, tt.yaml)
			cfg, err := Load(LoadOptions{File: path})
			if err == nil {
				t.Fatalf("Load succeeded with %+v", cfg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %q", err, tt.is)
			}
			if !strings.HasPrefix(err.Error(), path) {
				t.Errorf("error %q does not start with the file name", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if !reflect.DeepEqual(cfg, Config{}) {
				t.Errorf("Load returned %+v with an error, want the zero Config", cfg)
			}
		})
	}
}

func TestLoadEmptyFileKeepsDefaults(t *testing.T) {
	t.Parallel()
	for _, content := range []string{"", "# nothing set\n", "---\n", "~\n"} {
		cfg, err := Load(LoadOptions{File: writeFile(t, content)})
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("%q: got %+v, want the defaults", content, cfg)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(LoadOptions{File: filepath.Join(t.TempDir(), "absent.yaml")})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want fs.ErrNotExist", err)
	}
}

func TestLoadEnvAndOverrideErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		environ   []string
		overrides map[string]string
		is        error
		want      []string
	}{
		{"env int", []string{"CASCADE_MEDIA_UDP_PORT=abc"}, nil, ErrBadValue,
			[]string{`env CASCADE_MEDIA_UDP_PORT: invalid value "abc": want an integer`}},
		{"env int out of range", []string{"CASCADE_MEDIA_UDP_PORT=99999999999999999999"}, nil, ErrBadValue,
			[]string{`env CASCADE_MEDIA_UDP_PORT: invalid value "99999999999999999999": integer out of range`}},
		{"env bool", []string{"CASCADE_DEV=maybe"}, nil, ErrBadValue,
			[]string{`env CASCADE_DEV: invalid value "maybe": want true or false`}},
		{"override int", nil, map[string]string{"media.nack_history": "1k"}, ErrBadValue,
			[]string{`override media.nack_history: invalid value "1k": want an integer`}},
		{"override bool", nil, map[string]string{"dev": "yes"}, ErrBadValue,
			[]string{`override dev: invalid value "yes": want true or false`}},
		{"unknown override", nil, map[string]string{"media.udpport": "1"}, ErrUnknownField,
			[]string{`override "media.udpport": unknown field`}},
		{"override of a section", nil, map[string]string{"media": "x"}, ErrUnknownField,
			[]string{`override "media": unknown field`}},
		{"every bad value", []string{"CASCADE_DEV=maybe"}, map[string]string{"x": "1", "media.udp_port": "p"}, ErrBadValue,
			[]string{"env CASCADE_DEV", "override media.udp_port", `override "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(LoadOptions{Environ: tt.environ, Overrides: tt.overrides})
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want an error wrapping %q", err, tt.is)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestCheckFile(t *testing.T) {
	// Not parallel: it sets the process environment to show CheckFile ignores it.
	t.Setenv("CASCADE_PUBLISH_TOKEN", "from-env")
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"valid", "publish:\n  token: t\n", nil},
		{"every field problem", "region: eu west\nmedia:\n  udp_port: 70000\n", []string{
			`region: "eu west" may contain only letters, digits, '-' and '_'`,
			"media.udp_port: 70000 is not a port",
			"publish.token: required unless dev is true",
		}},
		{"load error stops there", "dev: true\nmedai: {}\n", []string{`:2: unknown field "medai"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := CheckFile(writeFile(t, tt.yaml))
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d problems %q, want %d", len(errs), errs, len(tt.want))
			}
			for i, want := range tt.want {
				if !strings.Contains(errs[i].Error(), want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, errs[i], want)
				}
			}
		})
	}
}

func TestExampleFileIsValid(t *testing.T) {
	t.Parallel()
	const path = "../cascade.example.yaml"
	cfg, err := Load(LoadOptions{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustMarshal(t, cfg), mustMarshal(t, Default()); got != want {
		t.Errorf("example file does not set the defaults:\n%s\nwant:\n%s", got, want)
	}
	for _, overrides := range []map[string]string{{"dev": "true"}, {"publish.token": "t"}} {
		cfg, err := Load(LoadOptions{File: path, Overrides: overrides})
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("example with %v: %v", overrides, err)
		}
	}
}

func TestExampleFileListsEveryOption(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../cascade.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range allPaths(reflect.TypeFor[Config](), "") {
		// Each key of the path must start a line (commented out or not)
		// after the key before it: a loose check that the option is there.
		rest := data
		for key := range strings.SplitSeq(path, ".") {
			loc := regexp.MustCompile(`(?m)^[ \t#]*(- )?` + key + `:`).FindIndex(rest)
			if loc == nil {
				t.Errorf("cascade.example.yaml does not list %s", path)
				break
			}
			rest = rest[loc[1]:]
		}
	}
}

// allPaths returns the dotted path of every field under struct type t,
// sections and the fields of list elements included.
func allPaths(t reflect.Type, prefix string) []string {
	var paths []string
	for i := range t.NumField() {
		f := t.Field(i)
		path := joinPath(prefix, yamlName(f))
		paths = append(paths, path)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			paths = append(paths, allPaths(ft, path)...)
		}
	}
	return paths
}

func TestEveryFieldHasASnakeCaseTag(t *testing.T) {
	t.Parallel()
	var check func(reflect.Type)
	check = func(t2 reflect.Type) {
		for i := range t2.NumField() {
			f := t2.Field(i)
			tag := f.Tag.Get("yaml")
			if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(tag) {
				t.Errorf("%s.%s: yaml tag %q is not snake_case", t2.Name(), f.Name, tag)
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				check(ft)
			}
		}
	}
	check(reflect.TypeFor[Config]())
}

func TestEveryOptionCanBeSet(t *testing.T) {
	t.Parallel()
	samples := map[reflect.Kind]string{
		reflect.String: "x",
		reflect.Bool:   "true",
		reflect.Int:    "1",
		reflect.Slice:  "a,b",
	}
	envs := make(map[string]string)
	for _, o := range options {
		if other, ok := envs[o.env]; ok {
			t.Errorf("%s and %s share %s", other, o.path, o.env)
		}
		envs[o.env] = o.path
		typ := reflect.TypeFor[Config]().FieldByIndex(o.index).Type
		sample := samples[typ.Kind()]
		if typ == reflect.TypeFor[time.Duration]() {
			sample = "750ms"
		}
		if _, err := Load(LoadOptions{Overrides: map[string]string{o.path: sample}}); err != nil {
			t.Errorf("set %s: %v", o.path, err)
		}
	}
	for path, env := range map[string]string{
		"media.udp_port":       "CASCADE_MEDIA_UDP_PORT",
		"dev_token":            "CASCADE_DEV_TOKEN",
		"http.allowed_origins": "CASCADE_HTTP_ALLOWED_ORIGINS",
		"media.ice_servers":    "CASCADE_MEDIA_ICE_SERVERS",
	} {
		if envs[env] != path {
			t.Errorf("%s sets %q, want %s", env, envs[env], path)
		}
	}
}

func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile("../cascade.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, tt := range loadErrorCases {
		f.Add([]byte(tt.yaml))
	}
	f.Add([]byte("dev: true\nmedia:\n  ice_servers:\n    - urls: [turn:a]\n      username: u\n"))
	f.Add([]byte("a: &a {b: *a}\nlog: {<<: [*a, *a]}\n"))
	// One file per fuzzing process, rewritten for each input: inputs run
	// one at a time within a process, and a directory each is slow.
	path := filepath.Join(f.TempDir(), "cascade.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(LoadOptions{File: path})
		if err != nil {
			if !reflect.DeepEqual(cfg, Config{}) {
				t.Fatalf("Load returned %+v with error %v", cfg, err)
			}
			return
		}
		_ = cfg.Validate()
		_ = cfg.PublicBaseURL()
		_ = cfg.EffectiveAllowedOrigins()
		_ = cfg.PublishToken()
	})
}
