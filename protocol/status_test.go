package protocol

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestNegotiateVersion(t *testing.T) {
	// This build speaks MinVersion..MaxVersion (1..1 in v1).
	tests := []struct {
		lo, hi uint16
		want   uint16 // 0: no common version
	}{
		{1, 1, 1},
		{1, MaxVersion + 3, MaxVersion},      // a newer peer that still speaks v1
		{MinVersion, MaxVersion, MaxVersion}, // ourselves
		{MaxVersion + 1, MaxVersion + 5, 0},  // a peer that dropped every version we speak
		{0, 0, 0},
		{2, 1, 0}, // an inverted range never negotiates, even unvalidated
		{0xffff, 0xffff, 0},
	}
	for _, tt := range tests {
		h := &Hello{MinVersion: tt.lo, MaxVersion: tt.hi, Role: RoleLeaf}
		got, err := NegotiateVersion(h)
		if tt.want == 0 {
			if !errors.Is(err, ErrUnsupportedVersion) {
				t.Errorf("%d-%d: %d, %v; want ErrUnsupportedVersion", tt.lo, tt.hi, got, err)
			}
			if StatusOf(err) != StatusUnsupportedVersion {
				t.Errorf("%d-%d: status %s", tt.lo, tt.hi, StatusOf(err))
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%d-%d: %d, %v; want %d", tt.lo, tt.hi, got, err, tt.want)
		}
		if got < h.MinVersion || got > h.MaxVersion || got < MinVersion || got > MaxVersion {
			t.Errorf("%d-%d: %d is outside one of the ranges", tt.lo, tt.hi, got)
		}
	}
}

func TestStatusErrorMapping(t *testing.T) {
	sentinels := map[Status]error{
		StatusBadRequest: ErrBadRequest, StatusUnsupportedVersion: ErrUnsupportedVersion,
		StatusNotFound: ErrNotFound, StatusOverloaded: ErrOverloaded, StatusTimeout: ErrTimeout,
		StatusForbidden: ErrForbidden, StatusInternal: ErrInternal, StatusUnavailable: ErrUnavailable,
	}
	for code, sentinel := range sentinels {
		// Received: an Error frame becomes an error that matches the sentinel.
		remote := (&Error{Code: code, Message: "detail"}).AsError()
		if !errors.Is(remote, sentinel) {
			t.Errorf("%s: errors.Is(remote, sentinel) is false", code)
		}
		var re *RemoteError
		if !errors.As(fmt.Errorf("step: %w", remote), &re) || re.Code != code || re.Message != "detail" {
			t.Errorf("%s: errors.As gave %+v", code, re)
		}
		if got := remote.Error(); got != "remote: "+code.String()+": detail" {
			t.Errorf("%s: Error() = %q", code, got)
		}
		for other, s := range sentinels {
			if other != code && errors.Is(remote, s) {
				t.Errorf("%s matches %s too", code, other)
			}
		}
		// Sent: a local error wrapping the sentinel gets the code; a relayed remote
		// error keeps its code.
		local := fmt.Errorf("open share: %w", sentinel)
		if StatusOf(local) != code {
			t.Errorf("%s: StatusOf(local) = %s", code, StatusOf(local))
		}
		if StatusOf(fmt.Errorf("relay: %w", remote)) != code {
			t.Errorf("%s: StatusOf(remote) = %s", code, StatusOf(remote))
		}
		em := ErrorMessage(local)
		if em.Code != code || em.Message != local.Error() {
			t.Errorf("%s: ErrorMessage = %+v", code, em)
		}
	}

	// The sentinel's words travel once: not "forbidden: forbidden: ...".
	for _, tt := range []struct {
		err  error
		msg  string // the Error frame's message
		seen string // the receiver's error
	}{
		{fmt.Errorf("%w: only accepted senders", ErrForbidden), "only accepted senders", "remote: forbidden: only accepted senders"},
		{fmt.Errorf("%w: busy", ErrOverloaded), "busy", "remote: overloaded: busy"},
		{fmt.Errorf("%w: no answer", ErrTimeout), "no answer", "remote: timeout: no answer"},
		{ErrForbidden, "forbidden", "remote: forbidden"},
	} {
		em := ErrorMessage(tt.err)
		if em.Message != tt.msg {
			t.Errorf("ErrorMessage(%q).Message = %q, want %q", tt.err, em.Message, tt.msg)
		}
		if got := em.AsError().Error(); got != tt.seen {
			t.Errorf("%q arrives as %q, want %q", tt.err, got, tt.seen)
		}
	}
	// An older peer's doubled message is shown once too.
	if got := (&Error{Code: StatusForbidden, Message: "forbidden: not yours"}).AsError().Error(); got != "remote: forbidden: not yours" {
		t.Errorf("an older peer's message: %q", got)
	}

	if !errors.Is((&Error{Code: StatusNotFound}).AsError(), ErrNotFound) {
		t.Error("errors.Is(remote not found, ErrNotFound) is false")
	}
	if got := (&Error{Code: StatusNotFound}).AsError().Error(); got != "remote: not found" {
		t.Errorf("no message: %q", got)
	}
	// A code from a newer version matches no sentinel but still prints and relays.
	future := (&Error{Code: 99}).AsError()
	for _, s := range sentinels {
		if errors.Is(future, s) {
			t.Errorf("status 99 matches %v", s)
		}
	}
	if future.Error() != "remote: status 99" || StatusOf(future) != 99 {
		t.Errorf("status 99: %q, %s", future, StatusOf(future))
	}

	for _, tt := range []struct {
		err  error
		want Status
	}{
		{nil, StatusOK},
		{errors.New("disk on fire"), StatusInternal},
		{io.EOF, StatusInternal},
		{fmt.Errorf("decode: %w", ErrMalformed), StatusBadRequest},
		{fmt.Errorf("read: %w", ErrFrameTooLarge), StatusBadRequest},
		{fmt.Errorf("read: %w", ErrUnknownType), StatusBadRequest},
		{ErrPeerIDMismatch, StatusInternal},
		// Two sentinels: the lower code wins, every time (not map order).
		{errors.Join(ErrUnavailable, ErrNotFound), StatusNotFound},
		{errors.Join(ErrTimeout, ErrOverloaded), StatusOverloaded},
	} {
		for i := 0; i < 20; i++ {
			if got := StatusOf(tt.err); got != tt.want {
				t.Fatalf("StatusOf(%v) = %s, want %s", tt.err, got, tt.want)
			}
		}
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{StatusOK: "ok", StatusNotFound: "not found",
		StatusUnsupportedVersion: "unsupported version", StatusUnavailable: "unavailable", 1000: "status 1000"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", uint16(s), s.String(), want)
		}
	}
}
