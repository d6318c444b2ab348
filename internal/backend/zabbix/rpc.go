package zabbix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
)

const (
	// DefaultTimeout bounds one request when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// MaxResponseBytes caps a reply: a token.get of every token of a big installation is large.
	MaxResponseBytes int64 = 8 << 20
	// apiPath is the JSON-RPC endpoint below the frontend's URL.
	apiPath = "/api_jsonrpc.php"
)

// Zabbix's JSON-RPC error codes (include/defines.inc.php). They are generic: the specific
// reason is in the error's data, which errorKind reads.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeInternal       = -32603
	codeApplication    = -32500
)

// Texts of data that errorKind maps (Zabbix 6.0 to 7.x, English; the API does not translate).
const (
	dataNotAuthorized = "Not authorized."
	dataTokenExpired  = "API token expired."
	dataSession       = "Session terminated"
	dataNoPermission  = "No permissions to call"
	dataNoObject      = "No permissions to referred object or it does not exist!"
	dataExists        = "already exists"
)

// rpcClient speaks Zabbix's JSON-RPC over HTTP. It learns the server's version once (with
// apiinfo.version, which refuses authentication) to choose how to send the credential, and
// forgets it after an Unauthorized so that an upgraded server is asked again.
type rpcClient struct {
	endpoint   string
	credential backend.SecretValue
	http       *http.Client
	timeout    time.Duration
	observer   func(op string, code int, d time.Duration, err error)
	nextID     atomic.Int64

	mu      sync.Mutex
	version string
}

func newRPCClient(cfg backend.Config) (*rpcClient, error) {
	endpoint, err := endpointURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Credential == "" {
		return nil, errors.New("zabbix: the credential (a Super-admin API token) is required")
	}
	if !printable(string(cfg.Credential)) {
		return nil, errors.New("zabbix: the credential must be printable ASCII without spaces")
	}
	hc, err := backend.NewHTTPClient(cfg.CABundle)
	if err != nil {
		return nil, fmt.Errorf("zabbix: %w", err)
	}
	c := &rpcClient{
		endpoint:   endpoint,
		credential: cfg.Credential,
		timeout:    cfg.Timeout,
		observer:   cfg.Observer,
		http:       hc,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// endpointURL is the API endpoint of a frontend URL; a URL that already names
// api_jsonrpc.php is taken as is.
func endpointURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return "", fmt.Errorf("zabbix: invalid URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("zabbix: URL %q must use http or https", u.Redacted())
	case u.Host == "":
		return "", fmt.Errorf("zabbix: URL %q has no host", u.Redacted())
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("zabbix: URL %q must not carry user info, query or fragment", u.Redacted())
	}
	if !strings.HasSuffix(u.Path, apiPath) {
		u.Path += apiPath
		u.RawPath = ""
	}
	return u.String(), nil
}

// authInHeader reports whether a server of this version takes the credential as
// "Authorization: Bearer" (6.4 and later; 7.2 drops the body's "auth") rather than in the
// body's "auth" (before 6.4; 6.0 ignores the header).
func authInHeader(version string) (bool, error) {
	major, minor, ok := parseVersion(version)
	if !ok {
		return false, fmt.Errorf("apiinfo.version answered %q, not a version", version)
	}
	return major > 6 || (major == 6 && minor >= 4), nil
}

// parseVersion reads "major.minor[.patch...]".
func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil && major >= 0 && minor >= 0
}

// apiVersion returns the cached server version, asking apiinfo.version when there is none.
func (c *rpcClient) apiVersion(ctx context.Context, op string) (string, error) {
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	if v != "" {
		return v, nil
	}
	return c.readVersion(ctx, op)
}

// readVersion asks apiinfo.version (without authentication: it refuses it) and caches it.
func (c *rpcClient) readVersion(ctx context.Context, op string) (string, error) {
	var v string
	if err := c.send(ctx, op, "apiinfo.version", []any{}, false, &v); err != nil {
		return "", err
	}
	if _, _, ok := parseVersion(v); !ok {
		return "", backend.NewError(op, backend.KindProtocol, http.StatusOK, "apiinfo.version answered %q, not a version", backend.Sanitize(v, c.credential))
	}
	c.mu.Lock()
	c.version = v
	c.mu.Unlock()
	return v, nil
}

// call sends an authenticated request and decodes its result into out.
func (c *rpcClient) call(ctx context.Context, op, method string, params, out any) error {
	return c.send(ctx, op, method, params, true, out)
}

// callAnon sends a request without the credential (apiinfo.version, user.checkAuthentication).
func (c *rpcClient) callAnon(ctx context.Context, op, method string, params, out any) error {
	return c.send(ctx, op, method, params, false, out)
}

type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
	ID      int64  `json:"id"`
	Auth    string `json:"auth,omitempty"`
}

type rpcReply struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result"`
	Error   *rpcError       `json:"error"`
	ID      json.RawMessage `json:"id"`
}

// rpcError is a JSON-RPC error as Zabbix sends it: Message is generic, Data specific.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data"`
}

func (c *rpcClient) send(ctx context.Context, op, method string, params any, auth bool, out any) error {
	header := false
	if auth {
		v, err := c.apiVersion(ctx, op)
		if err != nil {
			return err
		}
		if header, err = authInHeader(v); err != nil {
			return backend.NewError(op, backend.KindProtocol, http.StatusOK, "%s", backend.Sanitize(err.Error(), c.credential))
		}
	}
	id := c.nextID.Add(1)
	req := rpcRequest{JSONRPC: "2.0", Method: method, Params: params, ID: id}
	if auth && !header {
		req.Auth = c.credential.Reveal()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return backend.NewError(op, backend.KindInvalid, 0, "encoding %s: %v", method, err)
	}
	start := time.Now()
	code, err := c.roundTrip(ctx, op, method, id, body, auth && header, out)
	if c.observer != nil {
		c.observer(op, code, time.Since(start), err)
	}
	if backend.IsUnauthorized(err) {
		// An upgraded server may want the credential elsewhere: ask its version again.
		c.mu.Lock()
		c.version = ""
		c.mu.Unlock()
	}
	return err
}

// roundTrip posts one request and returns the HTTP status (0 without a reply) and an error
// that is nil or a *backend.Error.
func (c *rpcClient) roundTrip(ctx context.Context, op, method string, id int64, body []byte, bearer bool, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, backend.NewError(op, backend.KindInvalid, 0, "building request: %s", c.sanitize(err.Error()))
	}
	req.Header.Set("Content-Type", "application/json-rpc")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "apitoken-operator-zabbix-driver")
	if bearer {
		req.Header.Set("Authorization", "Bearer "+c.credential.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.transportError(op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return resp.StatusCode, c.transportError(op, err)
	}
	code := resp.StatusCode
	if code < 200 || code > 299 {
		e := &backend.Error{Op: op, Kind: kindForStatus(code), StatusCode: code, Message: method}
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return code, e
	}
	if int64(len(data)) > MaxResponseBytes {
		return code, backend.NewError(op, backend.KindProtocol, code, "%s: reply exceeds %d bytes", method, MaxResponseBytes)
	}
	var reply rpcReply
	if err := json.Unmarshal(data, &reply); err != nil {
		// Never quote the body: it may be an HTML page, or echo anything.
		return code, backend.NewError(op, backend.KindProtocol, code, "%s: reply is not JSON-RPC", method)
	}
	sameID := string(reply.ID) == strconv.FormatInt(id, 10)
	if reply.Error != nil && (sameID || string(reply.ID) == "null") {
		// JSON-RPC answers a request it could not read with id null.
		return code, c.rpcErr(op, method, code, reply.Error)
	}
	if reply.JSONRPC != "2.0" || !sameID {
		return code, backend.NewError(op, backend.KindProtocol, code, "%s: reply is not the JSON-RPC 2.0 answer to this request", method)
	}
	if len(reply.Result) == 0 {
		return code, backend.NewError(op, backend.KindProtocol, code, "%s: reply has neither result nor error", method)
	}
	if out != nil {
		if err := json.Unmarshal(reply.Result, out); err != nil {
			return code, backend.NewError(op, backend.KindProtocol, code, "%s: unexpected result: %s", method, c.sanitize(describeJSONError(err)))
		}
	}
	return code, nil
}

// rpcErr is the *backend.Error of a JSON-RPC error answer.
func (c *rpcClient) rpcErr(op, method string, code int, e *rpcError) *backend.Error {
	text := e.Data
	if text == "" {
		text = e.Message
	}
	return &backend.Error{Op: op, Kind: errorKind(method, e), StatusCode: code, Message: c.sanitize(method + ": " + text)}
}

// errorKind maps a JSON-RPC error to its kind. Zabbix's codes are generic (a bad token and a
// bad parameter are both -32602), so it reads data.
func errorKind(method string, e *rpcError) backend.ErrorKind {
	d := e.Data
	switch {
	case d == dataNotAuthorized, d == dataTokenExpired, strings.HasPrefix(d, dataSession):
		return backend.KindUnauthorized
	case strings.HasPrefix(d, dataNoPermission):
		return backend.KindForbidden
	case d == dataNoObject && strings.HasPrefix(method, "token."):
		// token.update/generate/delete of an id that does not exist (or that the caller
		// may not see, which for a Super admin is the same).
		return backend.KindNotFound
	case d == dataNoObject:
		return backend.KindForbidden
	case strings.Contains(d, dataExists) && method == "token.create":
		// Names are unique per user: another create for the same owner got there first.
		return backend.KindConflict
	case e.Code == codeInternal, isDatabaseError(d):
		return backend.KindTransient
	case e.Code == codeParseError, e.Code == codeInvalidRequest:
		return backend.KindProtocol
	case e.Code == codeMethodNotFound:
		return backend.KindMisconfigured
	default:
		return backend.KindInvalid
	}
}

// isDatabaseError reports the frontend's texts for a database that failed under it: the
// request may work later.
func isDatabaseError(data string) bool {
	for _, s := range []string{"SQL statement execution has failed", "Database error", "Error connecting to database", "DBEXECUTE_ERROR"} {
		if strings.Contains(data, s) {
			return true
		}
	}
	return false
}

// kindForStatus maps a non-2xx HTTP status. The API answers 200 to everything it handles, so
// another status comes from a proxy or a wrong URL: never NotFound, which the operator would
// take as "the token is gone".
func kindForStatus(code int) backend.ErrorKind {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return backend.KindTransient
	case code == http.StatusUnauthorized:
		return backend.KindUnauthorized
	case code == http.StatusForbidden:
		return backend.KindForbidden
	default:
		return backend.KindProtocol
	}
}

// hexRun matches a Zabbix token value (64 hex digits), also truncated or inside a longer run;
// no id, digest or UID the driver shows has 16 hex digits in a row.
var hexRun = regexp.MustCompile(`[0-9A-Fa-f]{16,}`)

// sanitize makes a text from the server or the transport safe for an error message.
func (c *rpcClient) sanitize(msg string) string {
	return backend.Sanitize(hexRun.ReplaceAllString(msg, "[redacted]"), c.credential)
}

func (c *rpcClient) transportError(op string, err error) *backend.Error {
	return &backend.Error{Op: op, Kind: backend.KindTransient, Message: c.sanitize(err.Error()), Cause: err}
}

// describeJSONError says what was wrong with a result without quoting it.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at offset %d", se.Offset)
	}
	return "malformed JSON"
}

// parseRetryAfter reads Retry-After as delay seconds or an HTTP date, at most a day.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	const maxDelay = 24 * time.Hour
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(maxDelay/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d.Round(time.Second), maxDelay)
		}
	}
	return 0
}
