package main

import (
	"archive/tar"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	. "github.com/onsi/gomega"
)

// TestTarballLoadsAndPushes: the tarball has the manifest.json that `docker load` and
// `kind load image-archive` read (one image, tagged), and `crane push` of it to a registry
// (an in-memory one on 127.0.0.1) stores the tarball's digest, which TestImageIsReproducible
// ties to the digest the build prints.
func TestTarballLoadsAndPushes(t *testing.T) {
	g := NewWithT(t)
	path := imageTarball(t)

	f, err := os.Open(path)
	g.Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	tr := tar.NewReader(f)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		g.Expect(err).NotTo(HaveOccurred())
		if h.Name == "manifest.json" {
			g.Expect(json.NewDecoder(tr).Decode(&manifest)).To(Succeed())
		}
	}
	g.Expect(manifest).To(HaveLen(1), "manifest.json with one image")
	g.Expect(manifest[0].RepoTags).To(HaveLen(1))
	g.Expect(manifest[0].Layers).To(HaveLen(1))

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := crane.Load(path)
	g.Expect(err).NotTo(HaveOccurred())
	want, err := img.Digest()
	g.Expect(err).NotTo(HaveOccurred())
	ref := host + "/statusops/apitoken-operator:test"
	g.Expect(crane.Push(img, ref)).To(Succeed())
	got, err := crane.Digest(ref)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(want.String()))
}
