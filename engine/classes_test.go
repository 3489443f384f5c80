package engine_test

import (
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/expr"
)

// TestLastErrorDocListsClasses: the documentation of the last_error
// variable (docs/variables.md is generated from it) names every class
// word, in the order of engine.Classes, and no class it does not have.
func TestLastErrorDocListsClasses(t *testing.T) {
	var doc string
	for _, v := range expr.Variables {
		if v.Name == "last_error" {
			doc = v.Doc
		}
	}
	if doc == "" {
		t.Fatal("no last_error variable")
	}
	words := make([]string, len(engine.Classes))
	for i, c := range engine.Classes {
		words[i] = string(c)
	}
	list, _, _ := strings.Cut(strings.TrimPrefix(doc, "Class of the previous attempt's failure: "), " (")
	list = strings.ReplaceAll(list, ", or ", ", ")
	if got := strings.Split(list, ", "); strings.Join(got, ",") != strings.Join(words, ",") {
		t.Errorf("last_error documents %q, engine.Classes are %q", got, words)
	}
}
