package engine

import "time"

// ReplyRetryHint is replyRetryHint for the tests of package engine_test:
// the wait a reply asks for, 0 for none.
func ReplyRetryHint(code int, text string) time.Duration {
	d, _ := replyRetryHint(code, text)
	return d
}
