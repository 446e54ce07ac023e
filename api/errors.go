package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is the stable machine-readable part of an API error. Callers branch
// on it with errors.Is, never on message text.
type Code string

const (
	CodeInvalid        Code = "invalid"         // the request is malformed or breaks a rule
	CodeConflict       Code = "conflict"        // clashes with what exists (port in use, already initialized)
	CodeStale          Code = "stale"           // computed from an old config version: recompute
	CodeNotLeader      Code = "not_leader"      // no leader could be reached
	CodeNotInitialized Code = "not_initialized" // no cluster yet
	CodeUnavailable    Code = "unavailable"     // the agent cannot serve this now (no quorum, shutting down)
	CodeNotFound       Code = "not_found"       // no such file or instance here
	CodeUnauthorized   Code = "unauthorized"    // no credential, or one the agent does not accept
	CodeForbidden      Code = "forbidden"       // a valid credential of the wrong kind for this route
	CodeInternal       Code = "internal"
	// CodeResend: a heartbeat named a full report the leader does not
	// hold (a new leader, one that never received it): send it in full.
	CodeResend Code = "resend"
)

// Error is the JSON error body: {"code": "...", "error": "..."}.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Is lets errors.Is(err, api.ErrConflict) match on the code alone.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code && t.Message == ""
	}
	return false
}

// Sentinels for errors.Is.
var (
	ErrInvalid        = &Error{Code: CodeInvalid}
	ErrConflict       = &Error{Code: CodeConflict}
	ErrStale          = &Error{Code: CodeStale}
	ErrNotLeader      = &Error{Code: CodeNotLeader}
	ErrNotInitialized = &Error{Code: CodeNotInitialized}
	ErrUnavailable    = &Error{Code: CodeUnavailable}
	ErrNotFound       = &Error{Code: CodeNotFound}
	ErrUnauthorized   = &Error{Code: CodeUnauthorized}
	ErrForbidden      = &Error{Code: CodeForbidden}
	ErrResend         = &Error{Code: CodeResend}
)

// Errorf builds an API error with a code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// HTTPStatus maps a code to the status it travels with.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeConflict, CodeStale, CodeResend:
		return http.StatusConflict
	case CodeNotInitialized, CodeNotFound:
		return http.StatusNotFound
	case CodeNotLeader, CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}
