// Package secretcache is what the manager's cache keeps of a managed Secret: its metadata
// and a hash of its token, never the value (TrimManagedSecret), and how the operator reads
// such a Secret back (UnfoldSecretMetadata, CachedTokenHash, MetadataTrimmed).
package secretcache

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// What the manager's cache keeps of a managed Secret. Anyone who may create Secrets can put
// the managed-by label on one, so a cached managed Secret must cost bounded memory whatever
// it holds, and the token value must never sit in the operator's heap.
//
// The markers and the token hash live under Data keys that contain '#'. A real Secret's data
// keys must match [-._a-zA-Z0-9]+, so these keys can never collide with a key a user wrote,
// and a tenant cannot forge them. A trimmed Secret written back by mistake is rejected by the
// API server for its invalid keys instead of silently wiping the token.
const (
	// cachedTokenHashKey holds the hex SHA-256 of the Secret's token value.
	cachedTokenHashKey = "#token-sha256"
	// cachedTrimmedKey marks an object that went through TrimManagedSecret.
	cachedTrimmedKey = "#trimmed"
	// cachedMetadataTrimmedKey marks an object whose labels and annotations were cut down.
	cachedMetadataTrimmedKey = "#metadata-trimmed"
	// cachedMetadataFoldedKey marks an object whose labels or annotations were exactly the
	// ones the operator writes and were folded away (see foldStandardMetadata); its value
	// says which.
	cachedMetadataFoldedKey = "#metadata-folded"
)

const (
	// maxCachedDataValue is the largest value of a kept data key. The operator writes ids,
	// permissions, timestamps and URLs, all far smaller.
	maxCachedDataValue = 1 << 10
	// maxCachedMetadata bounds the total size of labels plus annotations of a cached Secret.
	maxCachedMetadata = 64 << 10
	// maxCachedMetadataEntry is the largest single label or annotation kept once the total
	// was over maxCachedMetadata.
	maxCachedMetadataEntry = 1 << 10
	// maxCachedListEntries bounds ownerReferences and finalizers, which the API server does
	// not limit by count. The operator reads only the controller reference.
	maxCachedListEntries = 16
)

// markerValue is the value of the marker keys. One slice serves every cached Secret: the
// cache's objects are never written (readers get deep copies, which copy the bytes).
var markerValue = []byte("true")

// cachedDataKeys are the data keys the operator compares against what it would write.
var cachedDataKeys = []string{
	tokensv1alpha1.SecretKeyTokenID,
	tokensv1alpha1.SecretKeyPermission,
	tokensv1alpha1.SecretKeyExpiresAt,
	tokensv1alpha1.SecretKeyURL,
}

// cachedMetadataPrefixes are the label and annotation prefixes kept when the metadata is
// over budget: the operator's own keys and the well-known ones it sets.
var cachedMetadataPrefixes = []string{"tokens.statusops.dev/", "app.kubernetes.io/"}

// TrimManagedSecret is the cache transform for managed Secrets (a cache.TransformFunc).
// Of a *corev1.Secret it keeps the metadata the operator reads (name, namespace, uid,
// resourceVersion, labels, annotations, ownerReferences, deletionTimestamp, finalizers)
// minus managedFields, and of Data only tokenID, permission, expiresAt and url when each
// is at most 1 KiB. The token value is replaced by its hex SHA-256 (see CachedTokenHash).
// When labels plus annotations exceed 64 KiB, only keys under tokens.statusops.dev/ and
// app.kubernetes.io/ of at most 1 KiB each are kept; more than 16 ownerReferences are cut
// to the controller reference, more than 16 finalizers to (at most 16 of) the operator's
// group (see MetadataTrimmed). StringData is
// dropped. The result is marked (see IsTrimmedSecret). Other objects, including
// cache.DeletedFinalStateUnknown tombstones, are returned unchanged. It never fails.
func TrimManagedSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok || IsTrimmedSecret(s) {
		return obj, nil
	}
	s.ManagedFields = nil
	s.StringData = nil
	s.Data = trimmedSecretData(s.Data)
	if boundSecretMetadata(s) {
		s.Data[cachedMetadataTrimmedKey] = markerValue
	} else {
		foldStandardMetadata(s)
	}
	return s, nil
}

// apiTokenKind is the kind of the controller owner reference of a managed Secret.
const apiTokenKind = "APIToken"

// Which of a cached Secret's maps foldStandardMetadata folded away. The values are shared,
// like markerValue.
var (
	foldedLabels      = []byte("labels")
	foldedAnnotations = []byte("annotations")
	foldedBoth        = []byte("labels,annotations")
)

// foldStandardMetadata drops the labels and the annotations of a trimmed Secret when they
// are exactly what the operator writes and can be told from the rest of the object:
//   - labels: only managed-by and the apitoken label naming the controller owner (an
//     APIToken of our group);
//   - annotations: only the token's SHA-256, equal to the hash TrimManagedSecret recorded.
//
// A map of one or two entries costs some 340 bytes, and these two are on every managed
// Secret: at 20,000 tokens, 14 MB of the cache. UnfoldSecretMetadata puts them back on a
// copy. Anything else, a Secret template's labels for one, is left as it is.
func foldStandardMetadata(s *corev1.Secret) {
	labels := false
	if ref := metav1.GetControllerOfNoCopy(s); ref != nil && ref.Kind == apiTokenKind && ref.APIVersion == tokensv1alpha1.GroupVersion.String() &&
		len(s.Labels) == 2 && s.Labels[tokensv1alpha1.LabelManagedBy] == tokensv1alpha1.ManagedByValue && s.Labels[tokensv1alpha1.LabelAPIToken] == ref.Name {
		labels = true
	}
	annotations := false
	if h, ok := s.Data[cachedTokenHashKey]; ok && len(s.Annotations) == 1 {
		if v, ok := s.Annotations[AnnotationTokenSHA256]; ok && v == string(h) {
			annotations = true
		}
	}
	switch {
	case labels && annotations:
		s.Labels, s.Annotations = nil, nil
		s.Data[cachedMetadataFoldedKey] = foldedBoth
	case labels:
		s.Labels = nil
		s.Data[cachedMetadataFoldedKey] = foldedLabels
	case annotations:
		s.Annotations = nil
		s.Data[cachedMetadataFoldedKey] = foldedAnnotations
	}
}

// UnfoldSecretMetadata puts back the labels and annotations foldStandardMetadata folded away,
// on a copy read from the cache (never on the cache's own object). It does nothing to any
// other Secret.
func UnfoldSecretMetadata(s *corev1.Secret) {
	if s == nil {
		return
	}
	which, ok := s.Data[cachedMetadataFoldedKey]
	if !ok {
		return
	}
	delete(s.Data, cachedMetadataFoldedKey)
	w := string(which)
	if w == string(foldedLabels) || w == string(foldedBoth) {
		if ref := metav1.GetControllerOfNoCopy(s); ref != nil {
			s.Labels = map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue, tokensv1alpha1.LabelAPIToken: ref.Name}
		}
	}
	if w == string(foldedAnnotations) || w == string(foldedBoth) {
		if h, ok := s.Data[cachedTokenHashKey]; ok {
			s.Annotations = map[string]string{AnnotationTokenSHA256: string(h)}
		}
	}
}

// boundSecretMetadata cuts labels, annotations, ownerReferences and finalizers down when a
// tenant made them large, and reports whether it cut anything.
func boundSecretMetadata(s *corev1.Secret) bool {
	trimmed := false
	if metadataSize(s.Labels, s.Annotations) > maxCachedMetadata {
		s.Labels = keepOperatorMetadata(s.Labels)
		s.Annotations = keepOperatorMetadata(s.Annotations)
		trimmed = true
	}
	if len(s.OwnerReferences) > maxCachedListEntries {
		s.OwnerReferences = controllerRefOnly(s.OwnerReferences)
		trimmed = true
	}
	if len(s.Finalizers) > maxCachedListEntries {
		s.Finalizers = keepOperatorFinalizers(s.Finalizers)
		trimmed = true
	}
	return trimmed
}

// controllerRefOnly keeps the controller owner reference, the one metav1.IsControlledBy reads.
func controllerRefOnly(refs []metav1.OwnerReference) []metav1.OwnerReference {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return []metav1.OwnerReference{r}
		}
	}
	return nil
}

// keepOperatorFinalizers keeps the first maxCachedListEntries finalizers of the operator's
// group.
func keepOperatorFinalizers(fs []string) []string {
	var out []string
	for _, f := range fs {
		if strings.HasPrefix(f, tokensv1alpha1.GroupVersion.Group+"/") && len(out) < maxCachedListEntries {
			out = append(out, f)
		}
	}
	return out
}

// trimmedSecretData keeps the small operator keys and the token's hash, and the marker.
func trimmedSecretData(data map[string][]byte) map[string][]byte {
	out := map[string][]byte{cachedTrimmedKey: markerValue}
	for _, k := range cachedDataKeys {
		if v, ok := data[k]; ok && len(v) <= maxCachedDataValue {
			out[k] = v
		}
	}
	if v, ok := data[tokensv1alpha1.SecretKeyToken]; ok {
		out[cachedTokenHashKey] = []byte(HashToken(v))
	}
	return out
}

// metadataSize is the bytes of keys and values of the maps together.
func metadataSize(maps ...map[string]string) int {
	n := 0
	for _, m := range maps {
		for k, v := range m {
			n += len(k) + len(v)
		}
	}
	return n
}

// keepOperatorMetadata keeps the entries under cachedMetadataPrefixes of at most
// maxCachedMetadataEntry bytes. The API server caps annotations at 256 KiB in total, so what
// is left is at most that, and in practice the few keys the operator writes.
func keepOperatorMetadata(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range m {
		if len(k)+len(v) <= maxCachedMetadataEntry && hasAnyPrefix(k, cachedMetadataPrefixes) {
			out[k] = v
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// IsTrimmedSecret reports whether s came out of TrimManagedSecret (the cache) rather than
// from the API server. A trimmed Secret lacks its token and perhaps some metadata: it may be
// read, never written back.
func IsTrimmedSecret(s *corev1.Secret) bool {
	if s == nil {
		return false
	}
	_, ok := s.Data[cachedTrimmedKey]
	return ok
}

// CachedTokenHash returns the hex SHA-256 of s's token value, and whether s has a token key.
// For a trimmed Secret it is the hash recorded by TrimManagedSecret; for a live one it is
// computed from Data["token"], so callers need not care where s was read from.
func CachedTokenHash(s *corev1.Secret) (hash string, ok bool) {
	if s == nil {
		return "", false
	}
	if IsTrimmedSecret(s) {
		v, ok := s.Data[cachedTokenHashKey]
		return string(v), ok
	}
	v, ok := s.Data[tokensv1alpha1.SecretKeyToken]
	if !ok {
		return "", false
	}
	return HashToken(v), true
}

// MetadataTrimmed reports whether TrimManagedSecret cut s's labels and annotations down to
// the operator's prefixes because they were over 64 KiB (or cut its ownerReferences or
// finalizers because there were more than 16). Then a label or annotation of the
// Secret template may be missing from s although the live Secret has it: read the live
// Secret before deciding that the Secret needs an update.
func MetadataTrimmed(s *corev1.Secret) bool {
	if s == nil {
		return false
	}
	_, ok := s.Data[cachedMetadataTrimmedKey]
	return ok
}

// AnnotationTokenSHA256 on the managed Secret is the SHA-256 of the token value, so an edited
// token is noticed without keeping the value anywhere but the Secret.
const AnnotationTokenSHA256 = "tokens.statusops.dev/token-sha256"

// HashToken is the hex SHA-256 of a token value.
func HashToken(v []byte) string {
	sum := sha256.Sum256(v)
	return hex.EncodeToString(sum[:])
}

// TokenHash is the SHA-256 of the token a Secret holds: computed from the value on a live
// read, or kept by the cache transform (which drops the value itself); "" when the Secret
// holds no token.
func TokenHash(s *corev1.Secret) string {
	h, _ := CachedTokenHash(s)
	return h
}

// Metadata is the object a metadata-only watch of Secrets delivers.
func Metadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}
