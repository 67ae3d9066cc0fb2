package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// A config file is TOML whose keys are the command's flag names, without
// the dashes in front:
//
//	listen = ":6346"
//	join = ["sn1.example.org:6346", "sn2.example.org:6346"]
//	max-leaves = 4000
//	log-json = true
//
// Flags given on the command line win over the file.

// ConfigFlag is the flag that names a command's config file; it is never
// read from the file itself.
const ConfigFlag = "config"

// LoadConfig reads the config file at path and sets every flag of fs it
// names that the command line did not set. A file that does not exist is
// no error unless required (the user named it). A key that names no flag,
// or a value its flag refuses, is an error that names the file and the key.
// It reports whether a file was read.
func LoadConfig(fs *pflag.FlagSet, path string, required bool) (bool, error) {
	if path == "" {
		return false, nil
	}
	if _, err := os.Stat(path); err != nil {
		if !required && errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("config file: %w", err)
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
		return false, fmt.Errorf("config file %s: %w", path, err)
	}
	keys := k.Keys()
	slices.Sort(keys) // one error for one file, whatever the map order
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == ConfigFlag || f.Hidden {
			return false, fmt.Errorf("config file %s: %q is not a setting (the settings are the flags of --help)", path, key)
		}
		if f.Changed {
			continue // the command line wins
		}
		vals, err := configStrings(k.Get(key))
		if err != nil {
			return false, fmt.Errorf("config file %s: %s: %w", path, key, err)
		}
		if _, list := f.Value.(pflag.SliceValue); !list && len(vals) != 1 {
			return false, fmt.Errorf("config file %s: %s takes one value, not a list", path, key)
		}
		for _, v := range vals {
			if err := fs.Set(key, v); err != nil {
				return false, fmt.Errorf("config file %s: %s = %q: %w", path, key, v, err)
			}
		}
	}
	return true, nil
}

// LoadConfigIn is LoadConfig of the file named by --config, which must be
// there, or else of name in dataDir when that is there.
func LoadConfigIn(fs *pflag.FlagSet, named, dataDir, name string) error {
	path, required := named, named != ""
	if !required {
		path = filepath.Join(dataDir, name)
	}
	_, err := LoadConfig(fs, path, required)
	return err
}

// configStrings is a TOML value as the strings a flag's Set takes.
func configStrings(v any) ([]string, error) {
	switch v := v.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, err := configStrings(e)
			if err != nil || len(s) != 1 {
				return nil, fmt.Errorf("a list holds only plain values")
			}
			out = append(out, s[0])
		}
		return out, nil
	case string:
		return []string{v}, nil
	case bool:
		return []string{strconv.FormatBool(v)}, nil
	case int64:
		return []string{strconv.FormatInt(v, 10)}, nil
	case float64:
		return []string{strconv.FormatFloat(v, 'g', -1, 64)}, nil
	case time.Time:
		return nil, fmt.Errorf("a date is no setting's value")
	}
	return nil, fmt.Errorf("a %T is no setting's value", v)
}

// SaveConfig writes the flags of fs that are set (on the command line or by
// a config file) to path as a config file LoadConfig reads back, atomically
// and readable by the owner alone. skip names flags not to keep.
func SaveConfig(fs *pflag.FlagSet, path string, skip ...string) error {
	k := koanf.New(".")
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed || f.Name == ConfigFlag || slices.Contains(skip, f.Name) || err != nil {
			return
		}
		err = k.Set(f.Name, configValue(f))
	})
	if err != nil {
		return err
	}
	b, err := k.Marshal(toml.Parser())
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return writeConfig(path, b)
}

// configValue is a flag's value typed for TOML: numbers and booleans as
// such, lists as arrays, the rest (durations among them) as strings.
func configValue(f *pflag.Flag) any {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	s := f.Value.String()
	switch f.Value.Type() {
	case "bool":
		b, err := strconv.ParseBool(s)
		if err == nil {
			return b
		}
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		n, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			return n
		}
	case "float32", "float64":
		x, err := strconv.ParseFloat(s, 64)
		if err == nil {
			return x
		}
	}
	return s
}

// Settings lists every flag of fs with its value and where it came from:
// "set" (on the command line or, after LoadConfig, in the file) or
// "default".
// It is what `peer config` prints.
func Settings(fs *pflag.FlagSet) []Setting {
	var out []Setting
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == ConfigFlag || f.Hidden {
			return
		}
		from := "default"
		if f.Changed {
			from = "set"
		}
		out = append(out, Setting{Name: f.Name, Value: configValue(f), From: from, Usage: f.Usage})
	})
	return out
}

// Setting is one flag's effective value.
type Setting struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	From  string `json:"from"` // "set" or "default"
	Usage string `json:"usage"`
}

// TOML is s as a line of a config file.
func (s Setting) TOML() string {
	k := koanf.New(".")
	if err := k.Set(s.Name, s.Value); err != nil {
		return s.Name + " = ?"
	}
	b, err := k.Marshal(toml.Parser())
	if err != nil {
		return s.Name + " = ?"
	}
	return strings.TrimSpace(string(b))
}

// writeConfig replaces path with b, mode 600: a config may name secrets' files.
func writeConfig(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return renameio.WriteFile(path, b, 0o600, renameio.WithTempDir(dir))
}
