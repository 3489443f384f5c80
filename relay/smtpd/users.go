package smtpd

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/postern-mta/postern/internal/safefile"
	"golang.org/x/crypto/bcrypt"
)

// Users is a loaded users file: "user:$2y$..." lines, bcrypt hashes as
// htpasswd -B writes them ($2a$, $2b$ and $2y$ are accepted). Blank lines
// and lines starting with # are ignored. A Users is never changed after
// loading; reload by loading anew and calling Server.SetUsers.
type Users struct {
	hashes map[string][]byte
	// dummy is compared against for unknown users, so that they cost as
	// much time as a wrong password.
	dummy []byte
}

// LoadUsers reads a users file. Errors name the file and line.
func LoadUsers(path string) (*Users, error) {
	// The policy names the file: a FIFO or a device must not hang the
	// daemon, nor a huge file fill its memory.
	f, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("smtpd: users file: %w", err)
	}
	defer f.Close()
	return ParseUsers(safefile.Reader(f, path, MaxUsersFile), path)
}

// MaxUsersFile is the largest users file LoadUsers reads (about 100,000
// bcrypt lines).
const MaxUsersFile = 8 << 20

// ParseUsers reads users file content from r; name is used in errors.
func ParseUsers(r io.Reader, name string) (*Users, error) {
	u := &Users{hashes: map[string][]byte{}}
	sc := bufio.NewScanner(r)
	cost := bcrypt.DefaultCost
	var errs []error
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || strings.ContainsAny(user, " \t") {
			errs = append(errs, fmt.Errorf("%s:%d: want user:bcrypt-hash (e.g. from htpasswd -nB user)", name, n))
			continue
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: user %q: not a bcrypt hash ($2y$...): %w", name, n, user, err))
			continue
		}
		if _, dup := u.hashes[user]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: user %q listed twice", name, n, user))
			continue
		}
		if len(u.hashes) == 0 {
			cost = c
		}
		u.hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, fmt.Errorf("smtpd: users file %s: making the timing-equaliser hash: %w", name, err)
	}
	u.dummy = dummy
	return u, nil
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.hashes) }

// Verify reports whether pass is user's password. An unknown user costs a
// bcrypt comparison too, so that timing does not tell which users exist.
func (u *Users) Verify(user, pass string) bool {
	hash, ok := u.hashes[user]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(u.dummy, []byte(pass))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil
}
