package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// envPrefix starts every environment variable Load reads.
const envPrefix = "CASCADE_"

// LoadOptions says where Load reads the configuration from. Each source
// overrides the one before: defaults, File, Environ, Overrides.
type LoadOptions struct {
	// File is the YAML file to read; "" means none. Unknown keys are errors.
	File string
	// Environ holds KEY=value pairs, normally os.Environ(); nil means no
	// environment. CASCADE_ plus an option's dotted path, upper-cased with
	// dots as underscores, sets that option (CASCADE_MEDIA_UDP_PORT=9000).
	// Lists are comma-separated; media.ice_servers takes URLs only, one
	// server each, without credentials. An empty value counts as unset, and
	// unknown CASCADE_ variables are ignored.
	Environ []string
	// Overrides maps dotted paths ("media.udp_port") to values, parsed as
	// for Environ except that an empty value is set. The command line passes
	// only the flags the user set. Unknown keys are errors.
	Overrides map[string]string
}

// Load builds a Config from the defaults and the sources in opts. It
// reports every problem it finds while reading, each wrapping ErrSyntax,
// ErrUnknownField or ErrBadValue where one applies. It does not call
// Validate; the caller does.
func Load(opts LoadOptions) (Config, error) {
	cfg, errs := load(opts)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// CheckFile loads the YAML file at path over the defaults, with no
// environment or overrides, and returns every problem with it: the errors
// from reading it, or else each FieldError from Validate. It returns nil if
// the file is valid on its own; `cascade config validate` prints one
// problem per line.
func CheckFile(path string) []error {
	cfg, errs := load(LoadOptions{File: path})
	if len(errs) > 0 {
		return errs
	}
	var verr ValidationError
	if !errors.As(cfg.Validate(), &verr) {
		return nil
	}
	errs = make([]error, len(verr))
	for i, fe := range verr {
		errs[i] = fe
	}
	return errs
}

func load(opts LoadOptions) (Config, []error) {
	cfg := Default()
	if opts.File != "" {
		data, err := os.ReadFile(opts.File)
		if err != nil {
			return Config{}, []error{fmt.Errorf("read config: %w", err)}
		}
		if errs := decodeYAML(opts.File, data, &cfg); len(errs) > 0 {
			return Config{}, errs
		}
	}

	var errs []error
	for _, kv := range opts.Environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || value == "" {
			continue
		}
		i := slices.IndexFunc(options, func(o option) bool { return o.env == name })
		if i < 0 {
			continue
		}
		if err := options[i].set(&cfg, value); err != nil {
			errs = append(errs, fmt.Errorf("env %s: %w %q: %v", name, ErrBadValue, value, err))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(opts.Overrides)) {
		value := opts.Overrides[key]
		i := slices.IndexFunc(options, func(o option) bool { return o.path == key })
		if i < 0 {
			errs = append(errs, fmt.Errorf("override %q: %w", key, ErrUnknownField))
			continue
		}
		if err := options[i].set(&cfg, value); err != nil {
			errs = append(errs, fmt.Errorf("override %s: %w %q: %v", key, ErrBadValue, value, err))
		}
	}
	if len(errs) > 0 {
		return Config{}, errs
	}
	return cfg, nil
}

// decodeYAML decodes one YAML document from data over cfg. An empty file
// leaves cfg alone.
func decodeYAML(file string, data []byte, cfg *Config) []error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return yamlErrors(file, err)
	}
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return yamlErrors(file, err)
	default:
		return []error{fmt.Errorf("%s:%d: %w: more than one document", file, next.Line, ErrSyntax)}
	}

	// The decoder's own unknown-field errors name only the last key and a Go
	// type, so name every unknown key by its dotted path first. KnownFields
	// stays on in case the walk misses a key.
	w := keyWalker{file: file, seen: make(map[walkKey]bool)}
	w.walk(&doc, reflect.TypeFor[Config](), "")
	if len(w.errs) > 0 {
		return w.errs
	}
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return yamlErrors(file, err)
	}
	return nil
}

// yamlErrors turns a yaml.v3 error into one error per problem, each led by
// file:line where the message has a line.
func yamlErrors(file string, err error) []error {
	var terr *yaml.TypeError
	if !errors.As(err, &terr) {
		loc, msg := yamlLocation(file, strings.TrimPrefix(err.Error(), "yaml: "))
		return []error{fmt.Errorf("%s: %w: %s", loc, ErrSyntax, msg)}
	}
	errs := make([]error, len(terr.Errors))
	for i, m := range terr.Errors {
		loc, msg := yamlLocation(file, m)
		kind := ErrBadValue
		if strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type ") {
			kind = ErrUnknownField
		}
		errs[i] = fmt.Errorf("%s: %w: %s", loc, kind, msg)
	}
	return errs
}

// yamlLocation splits a yaml.v3 message "line 3: did not find..." into
// "file:3" and the rest. A message without a line keeps file alone.
func yamlLocation(file, msg string) (loc, rest string) {
	after, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return file, msg
	}
	line, rest, ok := strings.Cut(after, ": ")
	if _, err := strconv.Atoi(line); !ok || err != nil {
		return file, msg
	}
	return file + ":" + line, rest
}

// keyWalker finds mapping keys in a YAML tree that name no field of the
// Go type decoded from it.
type keyWalker struct {
	file string
	errs []error
	// seen holds each (node, type) pair walked. Anchors and merge keys can
	// reach one node many times, or in a cycle, because an anchor is
	// defined before its children; walking each pair once keeps the walk
	// linear. The decoder reports the cycle.
	seen map[walkKey]bool
}

type walkKey struct {
	node *yaml.Node
	typ  reflect.Type
}

// walk checks n, decoded into a value of type t at the dotted path. It
// follows only keys that exist in t; mismatched kinds are left for the
// decoder to report.
func (w *keyWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	k := walkKey{n, t}
	if n == nil || w.seen[k] {
		return
	}
	w.seen[k] = true
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			w.walk(c, t, path)
		}
	case yaml.AliasNode:
		w.walk(n.Alias, t, path)
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.MappingNode:
		if t.Kind() != reflect.Struct {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if key.Kind != yaml.ScalarNode {
				continue
			}
			if key.ShortTag() == "!!merge" {
				// <<: *anchor or <<: [*a, *b] merges mappings into this one.
				if val.Kind == yaml.SequenceNode {
					for _, c := range val.Content {
						w.walk(c, t, path)
					}
				} else {
					w.walk(val, t, path)
				}
				continue
			}
			f, ok := fieldByName(t, key.Value)
			if !ok {
				w.errs = append(w.errs, fmt.Errorf("%s:%d: %w %q", w.file, key.Line, ErrUnknownField, joinPath(path, key.Value)))
				continue
			}
			w.walk(val, f.Type, joinPath(path, key.Value))
		}
	}
}

// option is one leaf of Config that the environment and overrides can set.
type option struct {
	path  string // dotted YAML path: media.udp_port
	env   string // CASCADE_MEDIA_UDP_PORT
	index []int  // for reflect.Value.FieldByIndex from Config
}

// options lists every leaf of Config, found from the yaml tags, so a new
// field can be set from the environment and overrides with no more code.
var options = leaves(reflect.TypeFor[Config](), "", nil)

// leaves walks struct type t. A struct field is walked into; anything else,
// a list included, is a leaf.
func leaves(t reflect.Type, prefix string, index []int) []option {
	var opts []option
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		path := joinPath(prefix, name)
		idx := append(slices.Clip(index), i)
		if f.Type.Kind() == reflect.Struct {
			opts = append(opts, leaves(f.Type, path, idx)...)
			continue
		}
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
		opts = append(opts, option{path: path, env: env, index: idx})
	}
	return opts
}

// set parses s into this option of cfg.
func (o option) set(cfg *Config, s string) error {
	return setValue(reflect.ValueOf(cfg).Elem().FieldByIndex(o.index), s)
}

// setValue parses s into v. The error says what was wanted.
func setValue(v reflect.Value, s string) error {
	// The one list of structs: credentials cannot be given in a flat list,
	// so each URL becomes a server of its own.
	if v.Type() == reflect.TypeFor[[]ICEServer]() {
		var servers []ICEServer
		for _, u := range splitList(s) {
			servers = append(servers, ICEServer{URLs: []string{u}})
		}
		v.Set(reflect.ValueOf(servers))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want true or false")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Type() == reflect.TypeFor[time.Duration]() {
			d, err := time.ParseDuration(s)
			if err != nil {
				return errors.New("want a duration such as 500ms or 2m")
			}
			v.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if errors.Is(err, strconv.ErrRange) {
			return errors.New("integer out of range")
		}
		if err != nil {
			return errors.New("want an integer")
		}
		v.SetInt(n)
	case reflect.Slice:
		items := splitList(s)
		list := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			if err := setValue(list.Index(i), item); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		v.Set(list)
	default:
		// A test sets every option, so a new field of another type fails
		// there first.
		return fmt.Errorf("a %s cannot be set from text", v.Type())
	}
	return nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// yamlName is the YAML key of f as yaml.v3 sees it, or "" if f is not
// decoded.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

// fieldByName returns the field of struct type t whose YAML key is name.
func fieldByName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
