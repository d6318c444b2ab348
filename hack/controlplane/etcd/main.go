// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3/etcdmain so that the
// hermetic control plane needs nothing but Go modules.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
