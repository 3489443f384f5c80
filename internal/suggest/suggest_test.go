package suggest

import "testing"

func TestClosest(t *testing.T) {
	for _, tt := range []struct {
		w    string
		want string
	}{
		{"startls", "starttls"},
		{"prot", "port"}, // a transposition is one edit
		{"requir", "require"},
		{"zzzzzz", ""}, // nothing close
		{"", ""},
	} {
		if got := Closest(tt.w, []string{"starttls", "port"}, []string{"require", "optional"}); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.w, got, tt.want)
		}
	}
	if d := Distance("kitten", "sitting"); d != 3 {
		t.Errorf("Distance(kitten, sitting) = %d, want 3", d)
	}
}
