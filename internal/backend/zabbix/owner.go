package zabbix

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/statusops/apitoken-operator/internal/backend"
)

const (
	// maxNameLen is the length of token.name (unique per user).
	maxNameLen = 64
	// maxDescriptionRunes bounds token.description: 65535 characters on PostgreSQL and MySQL,
	// 2048 on Oracle; the smaller fits every database.
	maxDescriptionRunes = 2048
	// OtherClusterPrefix starts Owner.Cluster of a token another cluster's operator made: the
	// name keeps only a digest of the cluster identity.
	OtherClusterPrefix = "zabbix-digest:"
)

// ownedName matches the names the driver gives: k8s.<c8>.<uid>.<serial>.<h6>.
var ownedName = regexp.MustCompile(`^k8s\.([0-9a-f]{8})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(0|[1-9][0-9]{0,17})\.([0-9a-f]{6})$`)

// uidPattern is a Kubernetes UID as the API server makes it.
var uidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// clusterDigest is the 8 hex digits of sha256(cluster) that names carry instead of the
// cluster identity, which does not fit.
func clusterDigest(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return hex.EncodeToString(sum[:4])
}

// specDigest is 6 hex digits of a hash of everything a create sends besides the owner, so
// that a spec changed under the same serial names a new token (as the native driver's
// idempotency key hashes its request). The expiry counts in seconds, Zabbix's resolution.
func specDigest(spec backend.TokenSpec) string {
	exp := int64(0)
	if spec.ExpiresAt != nil {
		exp = spec.ExpiresAt.Unix()
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "v1\x00%s\x00%s\x00%d\x00%s", spec.Name, spec.Permission, exp, spec.Description))
	return hex.EncodeToString(sum[:3])
}

// claimDigest takes the place of specDigest in a claimed token's name (serial 0): a hash of the
// token id, so that two tokens claimed by one owner cannot collide on a name.
func claimDigest(tokenID string) string {
	sum := sha256.Sum256([]byte("claim\x00" + tokenID))
	return hex.EncodeToString(sum[:3])
}

// tokenName is the name a token of owner gets; digest is specDigest or claimDigest.
func tokenName(op string, owner backend.Owner, digest string) (string, error) {
	if !uidPattern.MatchString(owner.UID) {
		return "", backend.NewError(op, backend.KindInvalid, 0, "owner UID %q is not a Kubernetes UID (lower-case UUID); the token name could not carry it", owner.UID)
	}
	if owner.Serial < 0 {
		return "", backend.NewError(op, backend.KindInvalid, 0, "owner serial %d is negative", owner.Serial)
	}
	name := "k8s." + clusterDigest(owner.Cluster) + "." + owner.UID + "." + strconv.FormatInt(owner.Serial, 10) + "." + digest
	if len(name) > maxNameLen {
		return "", backend.NewError(op, backend.KindInvalid, 0, "serial %d is too long for a Zabbix token name (at most %d characters)", owner.Serial, maxNameLen)
	}
	return name, nil
}

// decodeOwner reads the owner from a token name; ok is false for a name the driver did not
// give. A name with another cluster's digest gets Cluster OtherClusterPrefix+digest, so that
// it never equals this cluster's identity.
func decodeOwner(name, cluster string) (backend.Owner, bool) {
	m := ownedName.FindStringSubmatch(name)
	if m == nil {
		return backend.Owner{}, false
	}
	serial, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		return backend.Owner{}, false
	}
	c := OtherClusterPrefix + m[1]
	if m[1] == clusterDigest(cluster) {
		c = cluster
	}
	return backend.Owner{UID: m[2], Cluster: c, Serial: serial}, true
}

// description is what people read next to the name: "<namespace/name>: <description>",
// cut to what every Zabbix database holds.
func description(spec backend.TokenSpec) string {
	d := spec.Name
	switch {
	case d == "":
		d = spec.Description
	case spec.Description != "":
		d += ": " + spec.Description
	}
	if utf8.RuneCountInString(d) > maxDescriptionRunes {
		d = string([]rune(d)[:maxDescriptionRunes-1]) + "…"
	}
	return d
}
