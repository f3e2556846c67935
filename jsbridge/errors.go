package jsbridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ncruces/go-sqlite3"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
)

// Error codes, stable across versions (MESSAGES.md).
const (
	CodeSQL          = "SQL_ERROR"
	CodeConstraint   = "CONSTRAINT"
	CodePKUpdate     = "PK_UPDATE"
	CodeReadOnly     = "READONLY"
	CodeBadShape     = "BAD_SHAPE"
	CodeUnauthorized = "UNAUTHORIZED"
	CodeBadRequest   = "BAD_REQUEST"
	CodeClosed       = "CLOSED"
	CodeInternal     = "INTERNAL"
)

// Error is an error with a stable code, as the page sees it.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(format string, args ...any) error {
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// Code returns the stable code of err.
func Code(err error) string {
	var e *Error
	var shape *client.ShapeError
	var serr *sqlite3.Error
	var rej *client.RejectedError
	var pe *protocol.Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.As(err, &pe) && pe.Code == protocol.ErrUnauthorized:
		return CodeUnauthorized
	case errors.As(err, &shape):
		if shape.Code == protocol.ErrUnauthorized {
			return CodeUnauthorized
		}
		return CodeBadShape
	case errors.As(err, &rej):
		return CodeConstraint
	case errors.Is(err, client.ErrClosed), errors.Is(err, context.Canceled):
		return CodeClosed
	case errors.As(err, &serr):
		if strings.Contains(serr.Error(), "primary key of") && strings.Contains(serr.Error(), "cannot be updated") {
			return CodePKUpdate
		}
		switch serr.Code() {
		case sqlite3.CONSTRAINT:
			return CodeConstraint
		case sqlite3.READONLY:
			return CodeReadOnly
		}
		return CodeSQL
	}
	msg := err.Error()
	if strings.Contains(msg, "cannot be written") || strings.Contains(msg, "arguments") {
		return CodeSQL
	}
	return CodeInternal
}

// errorValue is the {code, message} object of err.
func errorValue(err error) map[string]any {
	msg := err.Error()
	var e *Error
	var pe *protocol.Error
	switch {
	case errors.As(err, &e):
		msg = e.Message
	case errors.As(err, &pe) && pe.Code == protocol.ErrUnauthorized && pe.Message != "":
		msg = pe.Message // the service's reason, e.g. "token expired"
	}
	return map[string]any{"code": Code(err), "message": msg}
}
