package zabbixtest

import (
	"errors"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
)

// recordingTB records Fatalf and Skipf instead of ending the test.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recordingTB) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

// TestUnavailableFailsOnlyOnCI: without Zabbix a test is skipped with the reason, except with
// CI=true, where it fails.
func TestUnavailableFailsOnlyOnCI(t *testing.T) {
	cause := fmt.Errorf("%w: missing Debian packages: php8.2-cli", ErrNotInstalled)
	for _, tc := range []struct {
		ci        string
		wantFatal bool
	}{
		{ci: "true", wantFatal: true},
		{ci: "", wantFatal: false},
		{ci: "false", wantFatal: false},
		{ci: "1", wantFatal: false}, // only CI=true counts, as the CI system sets it
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			g := NewWithT(t)
			t.Setenv("CI", tc.ci)
			tb := &recordingTB{TB: t}
			unavailable(tb, cause)
			if tc.wantFatal {
				g.Expect(tb.fatal).To(ContainSubstring("missing Debian packages: php8.2-cli"))
				g.Expect(tb.skip).To(BeEmpty())
			} else {
				g.Expect(tb.skip).To(ContainSubstring("missing Debian packages: php8.2-cli"))
				g.Expect(tb.fatal).To(BeEmpty())
			}
			g.Expect(errors.Is(cause, ErrNotInstalled)).To(BeTrue())
		})
	}
}
