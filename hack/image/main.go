package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

func main() {
	var (
		o     Options
		out   string
		tag   string
		epoch string
	)
	flag.StringVar(&o.Binary, "binary", "bin/manager-linux-amd64", "Static linux manager binary to put at /manager.")
	flag.StringVar(&o.Arch, "arch", "amd64", "GOARCH of the binary.")
	flag.StringVar(&o.Source, "source", "https://github.com/statusops/apitoken-operator", "org.opencontainers.image.source label.")
	flag.StringVar(&o.Version, "version", "v0.1.0", "org.opencontainers.image.version label.")
	flag.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision label (the commit).")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix seconds stamped on every file and the config (default 0).")
	flag.StringVar(&tag, "tag", "ghcr.io/statusops/apitoken-operator:v0.1.0", "Image reference recorded in the tarball (what docker load names it).")
	flag.StringVar(&out, "out", "bin/apitoken-operator-image.tar", "Tarball to write.")
	flag.Parse()

	if epoch != "" {
		secs, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			fail(fmt.Errorf("--source-date-epoch: %w", err))
		}
		o.Created = time.Unix(secs, 0)
	} else {
		o.Created = time.Unix(0, 0)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		fail(fmt.Errorf("--tag: %w", err))
	}
	img, err := Build(o)
	if err != nil {
		fail(err)
	}
	if err := writeTarball(out, ref, img); err != nil {
		fail(err)
	}
	digest, _ := img.Digest()
	size, _ := tarballSize(out)
	fmt.Printf("image %s %s (%d bytes) -> %s\n", ref, digest, size, out)
}

func tarballSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}
