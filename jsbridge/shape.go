package jsbridge

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/latticesync/lattice/client"
)

// shapeJSON decodes a single-table shape until client.ParseShape (relational
// shapes) replaces it.
func shapeJSON(data []byte) (client.Shape, error) {
	var s struct {
		ID     string `json:"id"`
		Table  string `json:"table"`
		Where  string `json:"where"`
		Params []any  `json:"params"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return client.Shape{}, err
	}
	if s.Table == "" {
		return client.Shape{}, errors.New("shape has no table")
	}
	return client.Shape{ID: s.ID, Table: s.Table, Where: s.Where, Params: s.Params}, nil
}
