// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import "encoding/json"

// RawStrings are strings that keep their bytes through JSON, which the
// stages exchange their plan in. encoding/json writes invalid UTF-8 as
// U+FFFD, and a file name in Latin-1 given as an argument (`rm caf\xe9`)
// or kept in a variable had reached the command changed. Each string
// travels as base64 of its bytes.
type RawStrings []string

// MarshalJSON implements json.Marshaler.
func (r RawStrings) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	b := make([][]byte, len(r))
	for i, s := range r {
		b[i] = []byte(s)
	}
	return json.Marshal(b)
}

// UnmarshalJSON implements json.Unmarshaler.
func (r *RawStrings) UnmarshalJSON(data []byte) error {
	var b [][]byte
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	if b == nil {
		*r = nil
		return nil
	}
	out := make(RawStrings, len(b))
	for i, s := range b {
		out[i] = string(s)
	}
	*r = out
	return nil
}
