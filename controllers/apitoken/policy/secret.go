package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// This file is the managed Secret as it should be: the operator's labels and annotations,
// the template's, and the non-secret keys describing the token it holds.

// secretNeedsUpdate: the token is right but the Secret's labels, annotations or non-token
// keys differ from what desiredSecret would write.
func secretNeedsUpdate(in Inputs) bool {
	if in.Secret == nil {
		return false
	}
	want := DesiredSecretMeta(in.Token, in.Backend.URL, SecretTokenOf(in.Token))
	for k, v := range want.Labels {
		if in.Secret.Labels[k] != v {
			return true
		}
	}
	for k, v := range want.Annotations {
		if in.Secret.Annotations[k] != v {
			return true
		}
	}
	for k, v := range want.Data {
		if string(in.Secret.Data[k]) != v {
			return true
		}
	}
	return false
}

// SecretMeta is what the operator writes on the Secret, apart from the token itself.
type SecretMeta struct {
	Labels      map[string]string
	Annotations map[string]string
	Data        map[string]string
}

// SecretToken is what the Secret's non-secret keys describe.
type SecretToken struct {
	ID         string
	Permission tokensv1alpha1.Permission
	ExpiresAt  *metav1.Time
}

// SecretTokenOf describes the current token of status.
func SecretTokenOf(tok *tokensv1alpha1.APIToken) SecretToken {
	return SecretToken{ID: tok.Status.TokenID, Permission: tok.Status.Permission, ExpiresAt: tok.Status.ExpiresAt}
}

// DesiredSecretMeta: the template's labels and annotations, then the operator's own (which
// win), and the non-secret data keys describing t.
func DesiredSecretMeta(tok *tokensv1alpha1.APIToken, url string, t SecretToken) SecretMeta {
	m := SecretMeta{Labels: map[string]string{}, Annotations: map[string]string{}, Data: map[string]string{}}
	if t := tok.Spec.SecretTemplate; t != nil {
		for k, v := range t.Labels {
			m.Labels[k] = string(v)
		}
		for k, v := range t.Annotations {
			m.Annotations[k] = string(v)
		}
	}
	m.Labels[tokensv1alpha1.LabelManagedBy] = tokensv1alpha1.ManagedByValue
	m.Labels[tokensv1alpha1.LabelAPIToken] = tok.Name
	m.Data[tokensv1alpha1.SecretKeyTokenID] = t.ID
	m.Data[tokensv1alpha1.SecretKeyPermission] = string(t.Permission)
	m.Data[tokensv1alpha1.SecretKeyExpiresAt] = FormatTime(t.ExpiresAt)
	if url != "" {
		m.Data[tokensv1alpha1.SecretKeyURL] = url
	}
	return m
}
