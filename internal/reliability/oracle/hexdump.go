package oracle

import (
	"encoding/hex"
	"regexp"
	"strings"
)

// hexDumpLine is one line of a hexdump -C style dump (what client-go's logBody prints for
// binary bodies): offset, up to 16 hex bytes, the ASCII column.
var hexDumpLine = regexp.MustCompile(`^\s*[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2})+)\s*\|`)

// HexDumpBytes returns the bytes of every hex-dump line in out, concatenated in order, so a
// leak check can search a token value that a log printed as a binary body.
func HexDumpBytes(out string) string {
	var b []byte
	for _, line := range strings.FieldsFunc(strings.ReplaceAll(out, `\n`, "\n"), func(r rune) bool { return r == '\n' }) {
		// A dump's first line follows the log line's prefix ("body":"00000000 ...).
		if i := strings.Index(line, `"00000000  `); i >= 0 {
			line = line[i+1:]
		}
		m := hexDumpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, h := range strings.Fields(m[1]) {
			if v, err := hex.DecodeString(h); err == nil {
				b = append(b, v...)
			}
		}
	}
	return string(b)
}
