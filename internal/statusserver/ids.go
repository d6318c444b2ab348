package statusserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const (
	// TokenValuePrefix starts every generated token value (sgt_ + 40 base62).
	TokenValuePrefix = "sgt_"
	tokenValueLen    = 40
	tokenIDPrefix    = "tok_"
	boardIDPrefix    = "brd_"
	idLen            = 20
)

// randomBase62 returns n characters from crypto/rand, by rejection sampling so
// every character is equally likely.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2)
	for len(out) < n {
		// crypto/rand.Read never fails on supported platforms (it panics instead).
		_, _ = rand.Read(buf)
		for _, b := range buf {
			if b < 248 { // 248 = 4*62: keeps the distribution uniform
				out = append(out, base62[b%62])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out)
}

func newTokenValue() string { return TokenValuePrefix + randomBase62(tokenValueLen) }
func newTokenID() string    { return tokenIDPrefix + randomBase62(idLen) }
func newBoardID() string    { return boardIDPrefix + randomBase62(idLen) }

// hashValue is the only form in which a token value is stored.
func hashValue(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}
