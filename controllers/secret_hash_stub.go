package controllers

import corev1 "k8s.io/api/core/v1"

// cachedTokenHash is replaced by the cache transform's accessor.
func cachedTokenHash(s *corev1.Secret) (string, bool) { return "", false }
