package zabbix_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/zabbix"
	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	_ = zabbixtest.StopShared()
	os.Exit(code)
}

// counter counts the requests a driver sends, by port operation.
type counter struct {
	mu  sync.Mutex
	ops map[string]int
}

func (c *counter) observe(op string, _ int, _ time.Duration, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ops == nil {
		c.ops = map[string]int{}
	}
	c.ops[op]++
}

// take returns the counts so far and starts again from zero.
func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = nil
	if out == nil {
		out = map[string]int{}
	}
	return out
}

// config is the driver's configuration for z, with its admin token and its two users.
func config(z *zabbixtest.Server, cluster string) backend.Config {
	return backend.Config{
		Driver:     zabbix.DriverName,
		URL:        z.URL,
		Credential: backend.SecretValue(z.AdminToken),
		Cluster:    cluster,
		Settings: map[string]string{
			zabbix.SettingReadOnlyUser:   z.ReadOnlyUser.Name,
			zabbix.SettingFullAccessUser: z.FullAccessUser.Name,
		},
	}
}

// newDriver builds the driver from cfg; c, when set, counts its requests.
func newDriver(t *testing.T, cfg backend.Config, c *counter) *zabbix.Driver {
	t.Helper()
	if c != nil {
		cfg.Observer = c.observe
	}
	d, err := zabbix.NewDriver(cfg)
	if err != nil {
		t.Fatalf("NewDriver: %v", err)
	}
	return d.(*zabbix.Driver)
}

// newUID is a random Kubernetes-style UID.
func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// call calls the API of z as auth (a token value), for what the driver does not do.
func call(t *testing.T, z *zabbixtest.Server, method string, params any, auth string, out any) error {
	t.Helper()
	raw, err := z.Call(context.Background(), method, params, auth)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
	return nil
}

// mustCall is call that fails the test on an error.
func mustCall(t *testing.T, z *zabbixtest.Server, method string, params any, auth string, out any) {
	t.Helper()
	if err := call(t, z, method, params, auth, out); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

// handMadeToken makes a token for userID as a person would (name of their choosing), and
// returns its id and value.
func handMadeToken(t *testing.T, z *zabbixtest.Server, userID, name string) (string, backend.SecretValue) {
	t.Helper()
	var created struct {
		TokenIDs []string `json:"tokenids"`
	}
	mustCall(t, z, "token.create", map[string]any{"name": name, "userid": userID}, z.AdminToken, &created)
	var gen []struct {
		Token string `json:"token"`
	}
	mustCall(t, z, "token.generate", created.TokenIDs, z.AdminToken, &gen)
	return created.TokenIDs[0], backend.SecretValue(gen[0].Token)
}

// apiError is the Zabbix error of err, or nil.
func apiError(err error) *zabbixtest.Error {
	if e, ok := err.(*zabbixtest.Error); ok {
		return e
	}
	return nil
}

// hostGet reports whether value authenticates: a host.get with it, and Zabbix's error data
// when it does not.
func hostGet(t *testing.T, z *zabbixtest.Server, value backend.SecretValue) (bool, string) {
	t.Helper()
	err := call(t, z, "host.get", map[string]any{"output": []string{"hostid"}, "limit": 1}, value.Reveal(), nil)
	if err == nil {
		return true, ""
	}
	if e := apiError(err); e != nil {
		return false, e.Data
	}
	t.Fatalf("host.get: %v", err)
	return false, ""
}
