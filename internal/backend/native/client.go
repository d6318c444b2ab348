package native

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
)

const (
	// DefaultTimeout bounds one request when Options.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxResponseBytes caps a response body when Options.MaxResponseBytes is zero.
	DefaultMaxResponseBytes int64 = 1 << 20
	// DefaultUserAgent is sent when Options.UserAgent is empty.
	DefaultUserAgent = "apitoken-operator-backend-client"
	// maxListPages stops a server whose next_page never ends.
	maxListPages = 10000
)

// Options configures New.
type Options struct {
	// BaseURL is the API root, e.g. https://status.example.com/api/v3.
	BaseURL string
	// Token is the bearer credential.
	Token backend.SecretValue
	// CABundle is a PEM bundle for https; when set, only these roots are
	// trusted (not the system pool).
	CABundle []byte
	// Timeout bounds each request; default DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes caps response bodies; default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// HTTPClient, when set, is used as is (its transport replaces CABundle).
	HTTPClient *http.Client
	// UserAgent is sent with each request; default DefaultUserAgent.
	UserAgent string
	// Observer, when set, is called after every request, for metrics. op is
	// create, get, list, deactivate, ping or self; code is 0 on transport errors.
	Observer func(op string, code int, d time.Duration, err error)
}

// Client speaks the protocol over HTTP.
// It is safe for concurrent use. It does not retry: the operator's work queue
// backs off on transient errors.
type Client struct {
	base      *url.URL
	token     backend.SecretValue
	http      *http.Client
	timeout   time.Duration
	maxBytes  int64
	userAgent string
	observer  func(op string, code int, d time.Duration, err error)
	// driver is the port over this client (Driver).
	driver *Driver
}

// New validates o and builds a client. The base URL must be http or https;
// CABundle must hold at least one PEM certificate when set.
func New(o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("backend: invalid base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("backend: base URL %q must use http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("backend: base URL %q has no host", u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("backend: base URL %q must not carry user info, query or fragment", u.Redacted())
	}
	if o.Token == "" {
		return nil, errors.New("backend: token is required")
	}
	for _, r := range string(o.Token) {
		if r <= ' ' || r > '~' {
			// Never echo the value: the message only says what is wrong.
			return nil, errors.New("backend: token must be printable ASCII without spaces")
		}
	}
	c := &Client{
		base:      u,
		token:     o.Token,
		timeout:   o.Timeout,
		maxBytes:  o.MaxResponseBytes,
		userAgent: o.UserAgent,
		observer:  o.Observer,
		http:      o.HTTPClient,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	c.driver = &Driver{c: c}
	if c.http == nil {
		hc, err := backend.NewHTTPClient(o.CABundle)
		if err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
		c.http = hc
	}
	return c, nil
}

// BaseURL returns the API root the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// Ping implements Client.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, "ping", http.MethodGet, []string{"ping"}, nil, nil, nil, nil)
}

// Features implements ExtendedClient: it reads data.features of GET /ping.
func (c *Client) Features(ctx context.Context) (Features, error) {
	var out Features
	err := c.do(ctx, "ping", http.MethodGet, []string{"ping"}, nil, nil, nil, func(res *reply) error {
		var err error
		out, err = decodeFeatures(res.env.Data)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ClaimToken implements ExtendedClient (POST /api_tokens/{id}/claim).
func (c *Client) ClaimToken(ctx context.Context, id, externalID string) (*Token, error) {
	const op = "claim"
	if err := checkID(op, id); err != nil {
		return nil, err
	}
	if externalID == "" {
		return nil, backend.NewError(op, backend.KindInvalid, 0, "external_id is required")
	}
	raw, err := json.Marshal(map[string]string{"external_id": externalID})
	if err != nil {
		return nil, backend.NewError(op, backend.KindInvalid, 0, "encoding request: %v", err)
	}
	var t Token
	err = c.do(ctx, op, http.MethodPost, []string{"api_tokens", id, "claim"}, nil, raw, nil, func(res *reply) error {
		w, err := decodeTokenData(res.env.Data)
		if err != nil {
			return err
		}
		if w.ExternalID == nil || *w.ExternalID != externalID {
			return errors.New("claimed token does not carry the external_id")
		}
		t = w.toToken()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateToken implements Client.
func (c *Client) CreateToken(ctx context.Context, idempotencyKey string, req CreateRequest) (*CreatedToken, error) {
	const op = "create"
	body := createBody{
		Name:        req.Name,
		Permission:  req.Permission,
		ExpiresAt:   req.ExpiresAt,
		Description: req.Description,
		Labels:      req.Labels,
	}
	if req.ExternalID != "" {
		body.ExternalID = &req.ExternalID
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, backend.NewError(op, backend.KindInvalid, 0, "encoding request: %v", err)
	}
	h := http.Header{}
	if idempotencyKey != "" {
		h.Set("Idempotency-Key", idempotencyKey)
	}
	var out *CreatedToken
	err = c.do(ctx, op, http.MethodPost, []string{"api_tokens"}, nil, raw, h, func(res *reply) error {
		w, err := decodeTokenData(res.env.Data)
		if err != nil {
			return err
		}
		if w.Token == "" {
			return errors.New("created token has no value")
		}
		out = &CreatedToken{
			Token:    w.toToken(),
			Value:    backend.SecretValue(w.Token),
			Replayed: strings.EqualFold(res.header.Get("Idempotent-Replayed"), "true"),
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetToken implements Client.
func (c *Client) GetToken(ctx context.Context, id string) (*Token, error) {
	if err := checkID("get", id); err != nil {
		return nil, err
	}
	return c.tokenCall(ctx, "get", http.MethodGet, "api_tokens", id)
}

// DeactivateToken implements Client.
func (c *Client) DeactivateToken(ctx context.Context, id string) (*Token, error) {
	if err := checkID("deactivate", id); err != nil {
		return nil, err
	}
	return c.tokenCall(ctx, "deactivate", http.MethodPost, "api_tokens", id, "deactivate")
}

// Self implements Client.
func (c *Client) Self(ctx context.Context) (*Token, error) {
	return c.tokenCall(ctx, "self", http.MethodGet, "api_tokens", "self")
}

// ListTokens implements Client. It follows next_page until the last page;
// with opts.UpdatedSince it walks by cursor instead (see listUpdated).
func (c *Client) ListTokens(ctx context.Context, opts ListOptions) ([]Token, error) {
	return listTokens(ctx, c, opts, func(w *tokenWire) Token { return opts.keep(w.toToken()) })
}

// listTokens lists with opts, converting each token as its page is decoded (conv), so that
// the protocol's list and the port's keep only one slice of what they keep.
func listTokens[T any](ctx context.Context, c *Client, opts ListOptions, conv func(*tokenWire) T) ([]T, error) {
	q := listQuery(opts)
	if !opts.UpdatedSince.IsZero() {
		return listUpdated(ctx, c, q, opts.UpdatedSince, conv)
	}
	return listPaged(ctx, c, q, conv)
}

func listQuery(opts ListOptions) url.Values {
	q := url.Values{}
	if opts.ExternalID != "" {
		q.Set("external_id", opts.ExternalID)
	}
	if opts.Status != "" {
		q.Set("status", string(opts.Status))
	}
	for k, v := range opts.Labels {
		q.Add("label", k+"="+v)
	}
	perPage := opts.PerPage
	if perPage <= 0 || perPage > 100 {
		perPage = 100
	}
	q.Set("per_page", strconv.Itoa(perPage))
	return q
}

// listPaged follows page numbers: the newest-first list.
func listPaged[T any](ctx context.Context, c *Client, q url.Values, conv func(*tokenWire) T) ([]T, error) {
	const op = "list"
	var out []T
	for page, n := 1, 0; ; n++ {
		if n >= maxListPages {
			return nil, backend.NewError(op, backend.KindProtocol, 0, "more than %d pages", maxListPages)
		}
		q.Set("page", strconv.Itoa(page))
		next := 0
		err := c.do(ctx, op, http.MethodGet, []string{"api_tokens"}, q, nil, nil, func(res *reply) error {
			items, err := decodeTokenList(res.env.Data)
			if err != nil {
				return err
			}
			for i := range items {
				out = append(out, conv(&items[i]))
			}
			if p := res.env.Pagination; p != nil && p.NextPage != nil {
				next = *p.NextPage
			}
			if next != 0 && next <= page {
				return fmt.Errorf("next_page %d does not advance past page %d", next, page)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if next == 0 {
			return out, nil
		}
		page = next
	}
}

// listUpdated walks the updated_since list by cursor: each page asks for the
// tokens after the last (updated_at, id) seen, so a token that changes
// mid-walk comes again instead of shifting page offsets and making the walk
// skip another. It keeps the last copy of each token, in ascending order, and
// refuses a reply that does not follow that order (a server ignoring
// updated_since would otherwise send the newest-first list forever).
func listUpdated[T any](ctx context.Context, c *Client, q url.Values, since time.Time, conv func(*tokenWire) T) ([]T, error) {
	const op = "list"
	cur := updatedKey{at: since}
	q.Set("updated_since", since.UTC().Format(time.RFC3339Nano))
	var (
		all        []T
		superseded []bool             // by a newer copy of the same token
		last       = map[string]int{} // id -> index of its latest copy in all
	)
	for n := 0; ; n++ {
		if n >= maxListPages {
			return nil, backend.NewError(op, backend.KindProtocol, 0, "more than %d pages", maxListPages)
		}
		more := false
		err := c.do(ctx, op, http.MethodGet, []string{"api_tokens"}, q, nil, nil, func(res *reply) error {
			items, err := decodeTokenList(res.env.Data)
			if err != nil {
				return err
			}
			for i := range items {
				k, err := cur.next(&items[i], i)
				if err != nil {
					return err
				}
				cur = k
				if j, dup := last[items[i].ID]; dup {
					superseded[j] = true
				}
				last[items[i].ID] = len(all)
				all = append(all, conv(&items[i]))
				superseded = append(superseded, false)
			}
			more = res.env.Pagination != nil && res.env.Pagination.NextPage != nil
			if more && len(items) == 0 {
				return errors.New("next_page on an empty page")
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		q.Set("updated_since", cur.at.UTC().Format(time.RFC3339Nano))
		q.Set("after_id", cur.id)
		q.Del("page")
	}
	out := all[:0]
	for i, t := range all {
		if !superseded[i] {
			out = append(out, t)
		}
	}
	return out, nil
}

// updatedKey is a position in the (updated_at, id) order.
type updatedKey struct {
	at time.Time
	id string
}

// next checks that item i of a page follows k, with an id after k's on a tie
// (k.id is empty at the start, where updated_at may equal updated_since).
func (k updatedKey) next(w *tokenWire, i int) (updatedKey, error) {
	if w.UpdatedAt == nil {
		return k, fmt.Errorf("item %d: updated_since list item has no updated_at", i)
	}
	at := *w.UpdatedAt
	if at.Before(k.at) || (at.Equal(k.at) && k.id != "" && w.ID <= k.id) {
		return k, fmt.Errorf("item %d: updated_since list is not in ascending (updated_at, id) order", i)
	}
	return updatedKey{at: at, id: w.ID}, nil
}

func (c *Client) tokenCall(ctx context.Context, op, method string, segs ...string) (*Token, error) {
	var t Token
	err := c.do(ctx, op, method, segs, nil, nil, nil, func(res *reply) error {
		w, err := decodeTokenData(res.env.Data)
		if err != nil {
			return err
		}
		t = w.toToken()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// checkID refuses, before sending, an id the protocol cannot hold. "self"
// fits the charset but names the caller's own token, never another. The id is
// not quoted: a caller that mixed up fields might have passed a token value.
func checkID(op, id string) error {
	if !validID(id) || id == "self" {
		return backend.NewError(op, backend.KindInvalid, 0, "token id must be 1 to %d characters of [A-Za-z0-9_-]", maxIDLen)
	}
	return nil
}

// reply is a successful, decoded response.
type reply struct {
	code   int
	header http.Header
	env    envelope
}

// do sends one request and hands the envelope of a 2xx reply to decode (may be
// nil); a decode error becomes a Protocol error. It returns nil or an *backend.Error
// and reports to the observer exactly once, after decoding.
func (c *Client) do(ctx context.Context, op, method string, segs []string, q url.Values, body []byte, h http.Header, decode func(*reply) error) error {
	start := time.Now()
	res, err := c.roundTrip(ctx, op, method, segs, q, body, h)
	code := 0
	if res != nil {
		code = res.code
		if decode != nil {
			if derr := decode(res); derr != nil {
				err = c.protocolError(op, code, derr)
			}
		}
	} else {
		var e *backend.Error
		if errors.As(err, &e) {
			code = e.StatusCode
		}
	}
	if c.observer != nil {
		c.observer(op, code, time.Since(start), err)
	}
	return err
}

// endpoint is the URL of the API path made of segs below the base URL. Each
// segment is escaped exactly once: Path holds the plain text and RawPath its
// escaped form, which url.URL.String sends as is because the two agree.
func (c *Client) endpoint(segs []string) url.URL {
	u := *c.base
	plain, escaped := c.base.Path, c.base.EscapedPath()
	for _, s := range segs {
		plain += "/" + s
		escaped += "/" + url.PathEscape(s)
	}
	u.Path, u.RawPath = plain, escaped
	return u
}

func (c *Client) roundTrip(ctx context.Context, op, method string, segs []string, q url.Values, body []byte, h http.Header) (*reply, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	u := c.endpoint(segs)
	if q != nil {
		u.RawQuery = q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, backend.NewError(op, backend.KindInvalid, 0, "building request: %s", backend.Sanitize(err.Error(), c.token))
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(op, err)
	}
	defer resp.Body.Close()

	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, c.transportError(op, err)
	}
	if int64(len(data)) > c.maxBytes {
		return nil, backend.NewError(op, backend.KindProtocol, resp.StatusCode, "response exceeds %d bytes", c.maxBytes)
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.statusError(op, resp, data)
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		return nil, backend.NewError(op, backend.KindProtocol, resp.StatusCode, "response is not JSON (content type %q)",
			backend.Sanitize(resp.Header.Get("Content-Type"), c.token))
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, c.protocolError(op, resp.StatusCode, fmt.Errorf("malformed envelope: %w", describeJSONError(err)))
	}
	if !env.Success {
		return nil, backend.NewError(op, backend.KindProtocol, resp.StatusCode, "success is false in a %d reply", resp.StatusCode)
	}
	return &reply{code: resp.StatusCode, header: resp.Header, env: env}, nil
}

// statusError builds the error for a non-2xx reply, taking the message from the
// error envelope when there is one.
func (c *Client) statusError(op string, resp *http.Response, data []byte) *backend.Error {
	e := &backend.Error{Op: op, Kind: kindForStatus(resp.StatusCode), StatusCode: resp.StatusCode}
	if op == "claim" && resp.StatusCode == http.StatusConflict {
		// A claim's 409 means another owner, not a request in flight: retrying cannot help.
		e.Kind = backend.KindClaimed
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	var env envelope
	if isJSON(resp.Header.Get("Content-Type")) && json.Unmarshal(data, &env) == nil && env.Message != "" {
		msg := env.Message
		if len(env.Errors) > 0 {
			msg += " (" + strings.Join(env.Errors, "; ") + ")"
		}
		e.Message = backend.Sanitize(msg, c.token)
	} else if len(bytes.TrimSpace(data)) > 0 {
		// HTML error pages from proxies: say so instead of quoting them.
		e.Message = "non-JSON error response"
	}
	return e
}

func (c *Client) transportError(op string, err error) *backend.Error {
	return &backend.Error{Op: op, Kind: backend.KindTransient, Message: backend.Sanitize(err.Error(), c.token), Cause: err}
}

func (c *Client) protocolError(op string, code int, err error) *backend.Error {
	return &backend.Error{Op: op, Kind: backend.KindProtocol, StatusCode: code, Message: backend.Sanitize(err.Error(), c.token)}
}

func isJSON(contentType string) bool {
	if contentType == "" {
		// Lenient: some servers omit it; the JSON decoder still decides.
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// kindForStatus maps an HTTP status of a failed reply to its kind.
func kindForStatus(code int) backend.ErrorKind {
	switch {
	case code == http.StatusUnauthorized:
		return backend.KindUnauthorized
	case code == http.StatusForbidden:
		return backend.KindForbidden
	case code == http.StatusNotFound:
		return backend.KindNotFound
	case code == http.StatusConflict:
		return backend.KindConflict
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return backend.KindTransient
	case code >= 400:
		return backend.KindInvalid
	default:
		// 1xx/3xx or an unexpected 2xx: the server did not follow the protocol.
		return backend.KindProtocol
	}
}

// parseRetryAfter reads Retry-After as delay seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		const maxSeconds = 24 * 60 * 60 // a day; anything longer is nonsense
		if s > maxSeconds {
			s = maxSeconds
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}
