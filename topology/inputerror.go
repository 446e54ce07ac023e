package topology

import "fmt"

// InputError is a mistake in operator input (a cluster spec or a mirror
// file), located by a field path (`primary.port_base`) or a line (`line 3`),
// so the operator can go straight to it. The caller adds the file name.
//
// errors.Is(err, ErrInvalid) holds for it, so layers above map it to a
// client error without matching text.
type InputError struct {
	Where string // field path or "line N"; empty when the input as a whole is wrong
	Msg   string
}

func (e *InputError) Error() string {
	if e.Where == "" {
		return e.Msg
	}
	return e.Where + ": " + e.Msg
}

// Unwrap makes every input mistake an ErrInvalid without repeating
// ErrInvalid's text in the message.
func (e *InputError) Unwrap() error { return ErrInvalid }

func inputErrorf(where, format string, args ...any) error {
	return &InputError{Where: where, Msg: fmt.Sprintf(format, args...)}
}
