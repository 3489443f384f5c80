package policies

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

func nodeText(t testing.TB, n *yaml.Node) string {
	t.Helper()
	b, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
