package jsonout

import (
	"encoding/json"
	"testing"
)

// TestMarshal: <, > and & stay as they are; the rest is encoding/json's
// output, without the encoder's newline.
func TestMarshal(t *testing.T) {
	v := map[string]any{"if": "retry_num > 2 && x < 3", "n": 1}
	got, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"if":"retry_num > 2 && x < 3","n":1}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if !json.Valid(got) {
		t.Errorf("not valid JSON: %s", got)
	}
	if _, err := Marshal(func() {}); err == nil {
		t.Error("a func marshalled without error")
	}
}
