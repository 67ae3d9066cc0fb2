package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		args []string
		want options
	}{
		{nil, options{}},
		{[]string{"--keep"}, options{keep: true}},
		{[]string{"-dir", "/tmp/d"}, options{dir: "/tmp/d"}},
		{[]string{"-v", "--keep", "--dir=/d"}, options{keep: true, verbose: true, dir: "/d"}},
	}
	for _, tc := range cases {
		got, err := parseArgs(tc.args, io.Discard)
		if err != nil || got != tc.want {
			t.Errorf("parseArgs(%q) = %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}

func TestParseArgsRefuses(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--kept"}, "flag provided but not defined: -kept"},
		{[]string{"--keep=maybe"}, `invalid boolean value "maybe" for -keep`},
		{[]string{"now"}, `unexpected argument "now"`},
	}
	for _, tc := range cases {
		var usage strings.Builder
		_, err := parseArgs(tc.args, &usage)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseArgs(%q): error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseArgs([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: error %v, want flag.ErrHelp", err)
	}
}
