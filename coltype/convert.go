package coltype

import "errors"

// FromPGText converts a value in Postgres text output format (as sent by
// pgoutput and by text-format queries run with the session settings in
// SessionParams) into its SQLite representation.
func FromPGText(t Type, text []byte) (Value, error) {
	return Value{}, errors.New("coltype: not implemented")
}

// ToPGText converts a Value back into Postgres text input format.
// ok is false for NULL.
func ToPGText(t Type, v Value) (text string, ok bool, err error) {
	return "", false, errors.New("coltype: not implemented")
}
