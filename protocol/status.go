package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Status is a wire status code. It is separate from Go errors: codes travel, errors
// do not. AsError and StatusOf map between them at the edge.
type Status uint16

const (
	StatusOK                 Status = 0
	StatusBadRequest         Status = 1 // malformed or invalid message
	StatusUnsupportedVersion Status = 2 // no common protocol version
	StatusNotFound           Status = 3 // unknown content, peer or query
	StatusOverloaded         Status = 4 // try another node
	StatusTimeout            Status = 5 // part of the overlay did not answer in time
	StatusForbidden          Status = 6 // not allowed for this peer or role
	StatusInternal           Status = 7
	StatusUnavailable        Status = 8 // e.g. the file changed or is being rehashed
)

var statusNames = map[Status]string{
	StatusOK: "ok", StatusBadRequest: "bad request", StatusUnsupportedVersion: "unsupported version",
	StatusNotFound: "not found", StatusOverloaded: "overloaded", StatusTimeout: "timeout",
	StatusForbidden: "forbidden", StatusInternal: "internal error", StatusUnavailable: "unavailable",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("status %d", uint16(s))
}

// Sentinel errors for the status codes, for errors.Is.
var (
	ErrBadRequest         = errors.New("bad request")
	ErrUnsupportedVersion = errors.New("no common protocol version")
	ErrNotFound           = errors.New("not found")
	ErrOverloaded         = errors.New("overloaded")
	ErrTimeout            = errors.New("timed out")
	ErrForbidden          = errors.New("forbidden")
	ErrInternal           = errors.New("internal error")
	ErrUnavailable        = errors.New("unavailable")
)

var statusErrs = map[Status]error{
	StatusBadRequest: ErrBadRequest, StatusUnsupportedVersion: ErrUnsupportedVersion,
	StatusNotFound: ErrNotFound, StatusOverloaded: ErrOverloaded, StatusTimeout: ErrTimeout,
	StatusForbidden: ErrForbidden, StatusInternal: ErrInternal, StatusUnavailable: ErrUnavailable,
}

// RemoteError is an Error message received from the other side.
type RemoteError struct {
	Code    Status
	Message string
}

func (e *RemoteError) Error() string {
	// The message may start with the code's own words (an older peer's, or
	// one built from a wrapped sentinel): say them once.
	msg := strings.TrimPrefix(e.Message, e.Code.String()+": ")
	if err := statusErrs[e.Code]; err != nil {
		msg = strings.TrimPrefix(msg, err.Error()+": ")
	}
	if msg == "" || msg == e.Code.String() {
		return "remote: " + e.Code.String()
	}
	return "remote: " + e.Code.String() + ": " + msg
}

// Unwrap lets errors.Is match the status sentinel.
func (e *RemoteError) Unwrap() error { return statusErrs[e.Code] }

// AsError turns a received Error message into a Go error.
func (m *Error) AsError() error { return &RemoteError{Code: m.Code, Message: m.Message} }

// StatusOf picks the wire code for a local error.
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrUnknownType) {
		return StatusBadRequest
	}
	// In code order, not map order: an error that wraps two sentinels (errors.Join)
	// must get the same code every time.
	for s := StatusBadRequest; s <= StatusUnavailable; s++ {
		if errors.Is(err, statusErrs[s]) {
			return s
		}
	}
	return StatusInternal
}

// ErrorMessage builds the Error frame for a local error. The code already
// says what its sentinel would, so a message that starts with the sentinel
// leaves it out.
func ErrorMessage(err error) *Error {
	code := StatusOf(err)
	msg := err.Error()
	if s := statusErrs[code]; s != nil {
		msg = strings.TrimPrefix(msg, s.Error()+": ")
	}
	return &Error{Code: code, Message: msg}
}

// NegotiateVersion picks the highest version in both ranges.
func NegotiateVersion(h *Hello) (uint16, error) {
	hi := min(h.MaxVersion, MaxVersion)
	lo := max(h.MinVersion, MinVersion)
	if hi < lo {
		return 0, fmt.Errorf("%w: peer speaks %d-%d, we speak %d-%d", ErrUnsupportedVersion,
			h.MinVersion, h.MaxVersion, MinVersion, MaxVersion)
	}
	return hi, nil
}
