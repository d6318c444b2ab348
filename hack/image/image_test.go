package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/elf"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/installtest"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// The tarball under test: $IMAGE_TAR when set (`make test` points it at the one `make image`
// wrote), otherwise one built here from a freshly compiled manager, the way `make image` does.
var (
	tarOnce sync.Once
	tarPath string
	tarErr  error
)

func imageTarball(t *testing.T) string {
	t.Helper()
	tarOnce.Do(func() {
		if p := os.Getenv("IMAGE_TAR"); p != "" {
			tarPath = p
			return
		}
		dir, err := os.MkdirTemp("", "image-test-")
		if err != nil {
			tarErr = err
			return
		}
		binary := filepath.Join(dir, "manager")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", binary, "./cmd/manager")
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			tarErr = fmt.Errorf("building the manager: %v\n%s", err, out)
			return
		}
		img, err := Build(Options{Binary: binary, Created: time.Unix(1700000000, 0), Source: "https://github.com/statusops/apitoken-operator", Version: "v0.0.0-test", Revision: "test"})
		if err != nil {
			tarErr = err
			return
		}
		tarPath = filepath.Join(dir, "image.tar")
		tarErr = writeTarball(tarPath, name.MustParseReference("example.com/apitoken-operator:test").(name.Tag), img)
	})
	if tarErr != nil {
		t.Fatal(tarErr)
	}
	return tarPath
}

func openImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := tarball.ImageFromPath(imageTarball(t), nil)
	if err != nil {
		t.Fatalf("opening %s: %v", imageTarball(t), err)
	}
	return img
}

// layerFilesOf reads every entry of every layer (there is one) into memory.
func layerFilesOf(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	headers, data := map[string]*tar.Header{}, map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			headers[h.Name], data[h.Name] = h, b
		}
		_ = rc.Close()
	}
	return headers, data
}

// TestImageConfig: the image runs /manager as 65532 and carries the OCI labels.
func TestImageConfig(t *testing.T) {
	g := NewWithT(t)
	img := openImage(t)
	cf, err := img.ConfigFile()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cf.OS).To(Equal("linux"))
	g.Expect(cf.Config.User).To(Equal("65532:65532"))
	g.Expect(cf.Config.Entrypoint).To(Equal([]string{"/manager"}))
	g.Expect(cf.Config.Cmd).To(BeEmpty())
	for _, l := range []string{"source", "version", "revision"} {
		g.Expect(cf.Config.Labels).To(HaveKeyWithValue("org.opencontainers.image."+l, Not(BeEmpty())), l)
	}
	mt, err := img.MediaType()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(mt)).To(Equal("application/vnd.docker.distribution.manifest.v2+json"))
	layers, err := img.Layers()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(layers).To(HaveLen(1), "one layer on an empty base")
}

// TestImageFilesystem: exactly the manager, passwd/group and CA certificates; no shell, and
// the manager is statically linked (it would not start on an image without libc otherwise).
func TestImageFilesystem(t *testing.T) {
	g := NewWithT(t)
	headers, data := layerFilesOf(t, openImage(t))
	var names []string
	for n := range headers {
		names = append(names, n)
	}
	sort.Strings(names)
	g.Expect(names).To(Equal([]string{
		"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
		"home/", "home/nonroot/", "manager", "tmp/",
	}))
	for _, n := range names {
		base := filepath.Base(strings.TrimSuffix(n, "/"))
		g.Expect(base).NotTo(BeElementOf("sh", "bash", "ash", "busybox", "dash"), "a shell in the image: %s", n)
	}
	g.Expect(string(data["etc/passwd"])).To(ContainSubstring("nonroot:x:65532:65532:"))
	g.Expect(headers["manager"].Mode & 0o111).NotTo(BeZero())

	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(data["etc/ssl/certs/ca-certificates.crt"])).To(BeTrue())
	g.Expect(len(bytes.Split(data["etc/ssl/certs/ca-certificates.crt"], []byte("BEGIN CERTIFICATE"))) - 1).To(BeNumerically(">", 100))

	f, err := elf.NewFile(bytes.NewReader(data["manager"]))
	g.Expect(err).NotTo(HaveOccurred())
	for _, p := range f.Progs {
		g.Expect(p.Type).NotTo(Equal(elf.PT_INTERP), "the manager is dynamically linked")
	}
	libs, _ := f.ImportedLibraries()
	g.Expect(libs).To(BeEmpty())
}

// TestImageIsReproducible: building again from the image's own binary, labels and time gives
// the very same digest, and two builds in a row agree; a different timestamp changes it (so
// the comparison can tell builds apart).
func TestImageIsReproducible(t *testing.T) {
	g := NewWithT(t)
	img := openImage(t)
	want, err := img.Digest()
	g.Expect(err).NotTo(HaveOccurred())
	cf, err := img.ConfigFile()
	g.Expect(err).NotTo(HaveOccurred())
	_, data := layerFilesOf(t, img)
	binary := filepath.Join(t.TempDir(), "manager")
	g.Expect(os.WriteFile(binary, data["manager"], 0o755)).To(Succeed())
	o := Options{
		Binary: binary, Created: cf.Created.Time, Arch: cf.Architecture,
		Source:   cf.Config.Labels["org.opencontainers.image.source"],
		Version:  cf.Config.Labels["org.opencontainers.image.version"],
		Revision: cf.Config.Labels["org.opencontainers.image.revision"],
	}
	for i := range 2 {
		again, err := Build(o)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := again.Digest()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(want), "build %d", i+1)
	}
	o.Created = o.Created.Add(time.Second)
	other, err := Build(o)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(other.Digest()).NotTo(Equal(want))
}

// TestImageManagerRunsAgainstControlPlane extracts /manager from the tarball and runs it, as
// the image's entrypoint would, against a real API server until /readyz answers.
func TestImageManagerRunsAgainstControlPlane(t *testing.T) {
	g := NewWithT(t)
	_, data := layerFilesOf(t, openImage(t))
	dir := t.TempDir()
	binary := filepath.Join(dir, "manager")
	g.Expect(os.WriteFile(binary, data["manager"], 0o755)).To(Succeed())

	env := testenv.Start(t)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	g.Expect(installtest.WriteKubeconfig(env.Config, kubeconfig)).To(Succeed())
	health := testenv.FreeAddr(t)
	var logs testenv.SyncBuffer
	cmd := exec.Command(binary, "--kubeconfig="+kubeconfig, "--metrics-bind-address=0", "--health-probe-bind-address="+health)
	cmd.Env = []string{"KUBECONFIG=" + kubeconfig}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	proc := testenv.StartProcess(t, cmd)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g.Eventually(func(g Gomega) {
		if exited, err := proc.Exited(); exited {
			g.Expect(err).NotTo(HaveOccurred(), "the manager exited:\n%s", logs.String())
			g.Expect(exited).To(BeFalse(), "the manager exited:\n%s", logs.String())
			return
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}).WithContext(ctx).WithPolling(200*time.Millisecond).Should(Succeed(), "logs:\n%s", &logs)
}
