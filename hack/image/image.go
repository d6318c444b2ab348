// Package main builds the manager's OCI image from Go alone, with no container engine:
// the static manager binary, a minimal /etc/passwd and /etc/group (user 65532, nonroot) and
// the Mozilla root certificates from the golang.org/x/crypto/x509roots/fallback module, in one
// layer on an empty base. Every timestamp comes from the caller (the commit time in
// `make image`) and tar entries are written in a fixed order, so the same binary and inputs
// always give the same digest.
//
// It is a separate module (like hack/tools and hack/controlplane) so that the operator's own
// go.mod never carries go-containerregistry.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// NonrootUID is the user the manager runs as; the Deployment's securityContext names it too.
const NonrootUID = 65532

// Options are the inputs of one build. Two builds with equal Options and an equal binary
// produce the same image digest.
type Options struct {
	// Binary is the path of the static (CGO_ENABLED=0) linux manager binary.
	Binary string
	// Created is stamped on the config, the history and every file: a fixed time, never now.
	Created time.Time
	// Arch is the GOARCH the binary was built for.
	Arch string
	// Source, Version and Revision become the org.opencontainers.image.* labels.
	Source, Version, Revision string
}

// file is one entry of the image's only layer.
type file struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\nnonroot:x:65532:\n"
	// CACertificatesPath is where Go's crypto/x509 (and most other TLS stacks) look first on linux.
	CACertificatesPath = "etc/ssl/certs/ca-certificates.crt"
)

// caBundle is the NSS trust store as PEM. Roots that carry a constraint PEM cannot express
// (a distrust-after date) are left out, as Debian's ca-certificates does.
func caBundle() []byte {
	var buf bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate})
	}
	return buf.Bytes()
}

// layerFiles lists the filesystem: no shell, no package manager, nothing but the manager and
// what a TLS client and a non-root user need.
func layerFiles(manager []byte) []file {
	files := []file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: CACertificatesPath, mode: 0o644, data: caBundle()},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700, uid: NonrootUID, gid: NonrootUID},
		{name: "manager", mode: 0o755, data: manager},
		{name: "tmp/", dir: true, mode: 0o1777},
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files
}

// layerTar writes the files as an uncompressed tar with fixed owners, modes and times.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: mtime,
			Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.data)),
		}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Build assembles the image in memory.
func Build(o Options) (v1.Image, error) {
	manager, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading the manager binary: %w", err)
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	created := o.Created.UTC()
	raw, err := layerTar(layerFiles(manager), created)
	if err != nil {
		return nil, fmt.Errorf("writing the layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return nil, fmt.Errorf("compressing the layer: %w", err)
	}
	// Docker schema 2 media types: the tarball format `docker load` reads keeps no manifest,
	// so its readers (docker load, crane push) rebuild a schema 2 manifest from it. With the same
	// media types here, the digest this build prints is the digest a registry receives. The
	// config itself is the OCI image config.
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "hack/image: manager, /etc/passwd, /etc/group, CA certificates",
			Comment:   "built without a container engine",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Config.User = fmt.Sprintf("%d:%d", NonrootUID, NonrootUID)
	cf.Config.Entrypoint = []string{"/manager"}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/" + CACertificatesPath}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
		"org.opencontainers.image.title":       "apitoken-operator",
		"org.opencontainers.image.description": "Kubernetes operator for the API tokens of a status-page backend",
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	return mutate.ConfigFile(img, cf)
}

// writeTarball writes img as a `docker save` style tarball (manifest.json naming ref, the
// config and the layer blobs), which `docker load`, `kind load image-archive` and
// `crane push` read. It writes through a temporary file, so a failed build never leaves
// half a tarball.
func writeTarball(out string, ref name.Tag, img v1.Image) error {
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}
