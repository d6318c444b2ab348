package statusserver

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	bolt "go.etcd.io/bbolt"
)

// TestStoreAdminRole checks who gets the admin role: the bootstrap and the
// imported credential, never an API-made token, and it survives a reopen.
func TestStoreAdminRole(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "db")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := OpenStore(path)
	g.Expect(err).NotTo(HaveOccurred())
	bootID, _, err := s.CreateAdminToken(AdminTokenName, now)
	g.Expect(err).NotTo(HaveOccurred())
	created, err := s.ImportAdminToken("imported", "imported-admin-token-0123456789", now)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created).To(BeTrue())
	made, _, err := s.createToken(tokenParams{Name: "made", Permission: permFullAccess}, now)
	g.Expect(err).NotTo(HaveOccurred())
	imported, ok := s.authenticate("imported-admin-token-0123456789", now)
	g.Expect(ok).To(BeTrue())
	g.Expect(s.Close()).To(Succeed())

	s, err = OpenStore(path)
	g.Expect(err).NotTo(HaveOccurred())
	defer s.Close()
	for id, admin := range map[string]bool{bootID: true, imported.ID: true, made.ID: false} {
		r, ok := s.getToken(id)
		g.Expect(ok).To(BeTrue())
		g.Expect(r.isAdmin()).To(Equal(admin), "token %s", r.Name)
	}
}

// TestStoreMigratesLegacyAdmin opens a store written before roles existed: the
// recorded admin id gets the admin role, on disk too.
func TestStoreMigratesLegacyAdmin(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "db")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := OpenStore(path)
	g.Expect(err).NotTo(HaveOccurred())
	id, _, err := s.CreateAdminToken(AdminTokenName, now)
	g.Expect(err).NotTo(HaveOccurred())
	other, _, err := s.createToken(tokenParams{Name: "other", Permission: permFullAccess}, now)
	g.Expect(err).NotTo(HaveOccurred())
	legacy, _ := s.getToken(id)
	legacy.Role = ""
	legacy.LastUsedAt = nil
	g.Expect(s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketTokens, id, &legacy) })).To(Succeed())
	g.Expect(s.Close()).To(Succeed())

	for range 2 { // the second open reads what the first migration wrote
		s, err = OpenStore(path)
		g.Expect(err).NotTo(HaveOccurred())
		r, _ := s.getToken(id)
		g.Expect(r.isAdmin()).To(BeTrue())
		o, _ := s.getToken(other.ID)
		g.Expect(o.isAdmin()).To(BeFalse())
		var onDisk tokenRecord
		g.Expect(s.db.View(func(tx *bolt.Tx) error {
			return json.Unmarshal(tx.Bucket(bucketTokens).Get([]byte(id)), &onDisk)
		})).To(Succeed())
		g.Expect(onDisk.Role).To(Equal(roleAdmin))
		g.Expect(s.Close()).To(Succeed())
	}
}

func TestParseFeatures(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    []string
		wantErr bool
	}{
		"empty":   {in: "", want: nil},
		"two":     {in: "usage, claim", want: []string{FeatureUsage, FeatureClaim}},
		"commas":  {in: ",updated_since,", want: []string{FeatureUpdatedSince}},
		"unknown": {in: "usage,bogus", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseFeatures(tc.in)
			if tc.wantErr {
				g.Expect(err).To(MatchError(ContainSubstring(`"bogus"`)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}
