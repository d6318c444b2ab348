package memlimit

import (
	"os"
	"runtime/debug"
	"testing"

	. "github.com/onsi/gomega"
)

func TestCgroupMemoryLimit(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		g.Expect(os.WriteFile(p, []byte(content), 0o644)).To(Succeed())
		return p
	}
	g.Expect(cgroupMemoryLimit([]string{write("v2", "268435456\n")})).To(BeEquivalentTo(256 << 20))
	g.Expect(cgroupMemoryLimit([]string{write("unlimited", "max\n")})).To(BeZero())
	g.Expect(cgroupMemoryLimit([]string{dir + "/absent", write("v1", "134217728")})).To(BeEquivalentTo(128 << 20))
	g.Expect(cgroupMemoryLimit([]string{write("v1-unlimited", "9223372036854771712")})).To(BeZero())
	g.Expect(cgroupMemoryLimit([]string{dir + "/absent"})).To(BeZero())
}

func TestSetGCPercentDefault(t *testing.T) {
	g := NewWithT(t)
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	debug.SetGCPercent(100)
	g.Expect(SetGCPercentDefault()).To(BeTrue())
	g.Expect(debug.SetGCPercent(100)).To(Equal(DefaultGCPercent))

	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200) // as the runtime applies GOGC at start
	g.Expect(SetGCPercentDefault()).To(BeFalse())
	g.Expect(debug.SetGCPercent(100)).To(Equal(200), "a GOGC the user set is kept")
}
