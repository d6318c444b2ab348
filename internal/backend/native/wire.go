package native

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
)

// envelope is the protocol's reply wrapper, for success and error replies.
type envelope struct {
	Success    bool            `json:"success"`
	Data       json.RawMessage `json:"data"`
	Pagination *pagination     `json:"pagination"`
	Message    string          `json:"message"`
	Errors     []string        `json:"errors"`
}

type pagination struct {
	CurrentPage int  `json:"current_page"`
	PerPage     int  `json:"per_page"`
	TotalPages  int  `json:"total_pages"`
	TotalCount  int  `json:"total_count"`
	NextPage    *int `json:"next_page"`
}

// tokenWire is the token object as sent on the wire.
type tokenWire struct {
	ID            string              `json:"id"`
	Name          string              `json:"name"`
	Description   string              `json:"description"`
	Permission    backend.Permission  `json:"permission"`
	Status        backend.TokenStatus `json:"status"`
	ExpiresAt     *time.Time          `json:"expires_at"`
	LastUsedAt    *time.Time          `json:"last_used_at"`
	CreatedAt     time.Time           `json:"created_at"`
	DeactivatedAt *time.Time          `json:"deactivated_at"`
	Last4         string              `json:"last4"`
	ExternalID    *string             `json:"external_id"`
	Labels        map[string]string   `json:"labels"`
	Role          *string             `json:"role"`
	LastWriteAt   *time.Time          `json:"last_write_at"`
	LastDeniedAt  *time.Time          `json:"last_denied_at"`
	UpdatedAt     *time.Time          `json:"updated_at"`
	// Token is the value, present only in a create reply.
	Token string `json:"token"`
}

// createBody is the POST /api_tokens request.
type createBody struct {
	Name        string             `json:"name"`
	Permission  backend.Permission `json:"permission"`
	ExpiresAt   *time.Time         `json:"expires_at,omitempty"`
	Description string             `json:"description,omitempty"`
	ExternalID  *string            `json:"external_id,omitempty"`
	Labels      map[string]string  `json:"labels,omitempty"`
}

func (w *tokenWire) toToken() Token {
	t := Token{
		ID:            w.ID,
		Name:          w.Name,
		Description:   w.Description,
		Permission:    w.Permission,
		Status:        w.Status,
		ExpiresAt:     w.ExpiresAt,
		LastUsedAt:    w.LastUsedAt,
		CreatedAt:     w.CreatedAt,
		DeactivatedAt: w.DeactivatedAt,
		Last4:         w.Last4,
		Labels:        w.Labels,
		LastWriteAt:   w.LastWriteAt,
		LastDeniedAt:  w.LastDeniedAt,
		UpdatedAt:     w.UpdatedAt,
	}
	if w.ExternalID != nil {
		t.ExternalID = *w.ExternalID
	}
	if w.Role != nil {
		t.Role = *w.Role
	}
	return t
}

var errNoData = errors.New("reply has no data")

// decodeTokenData decodes and checks one token object. Errors carry no input
// text beyond the JSON decoder's type messages, which never quote values.
func decodeTokenData(data json.RawMessage) (*tokenWire, error) {
	if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil, errNoData
	}
	var w tokenWire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("malformed token object: %w", describeJSONError(err))
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	return &w, nil
}

func decodeTokenList(data json.RawMessage) ([]tokenWire, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errNoData
	}
	var ws []tokenWire
	if err := json.Unmarshal(data, &ws); err != nil {
		return nil, fmt.Errorf("malformed token list: %w", describeJSONError(err))
	}
	for i := range ws {
		if err := ws[i].check(); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return ws, nil
}

// maxIDLen bounds ids; with idPattern it keeps an id safe in a URL path, a
// label and a log line without escaping.
const maxIDLen = 128

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

func (w *tokenWire) check() error {
	if w.ID == "" {
		return errors.New("token object has no id")
	}
	if !validID(w.ID) {
		// Not quoted: the reply is untrusted and the field could hold anything.
		return fmt.Errorf("token object id is not 1 to %d characters of [A-Za-z0-9_-]", maxIDLen)
	}
	switch w.Status {
	case backend.StatusActive, backend.StatusInactive:
	default:
		return errors.New("token object has an unknown status")
	}
	return w.checkTimes()
}

// Replies with times outside [minReplyTime, maxReplyTime) are protocol errors:
// such a time is a server bug (a zero value, seconds read as milliseconds), and
// passing it on would make the operator expire, rotate or never rotate a token
// at the wrong moment.
var (
	minReplyTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxReplyTime = time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// checkTimes checks every timestamp of the token object; created_at is required.
func (w *tokenWire) checkTimes() error {
	if w.CreatedAt.IsZero() {
		return errors.New("token object has no created_at")
	}
	times := []struct {
		field string
		t     *time.Time
	}{
		{"created_at", &w.CreatedAt},
		{"expires_at", w.ExpiresAt},
		{"last_used_at", w.LastUsedAt},
		{"deactivated_at", w.DeactivatedAt},
		{"last_write_at", w.LastWriteAt},
		{"last_denied_at", w.LastDeniedAt},
		{"updated_at", w.UpdatedAt},
	}
	for _, f := range times {
		if f.t != nil && (f.t.Before(minReplyTime) || !f.t.Before(maxReplyTime)) {
			return fmt.Errorf("token object field %q is outside 2000-01-01..9000-01-01", f.field)
		}
	}
	return nil
}

// describeJSONError shortens decoder errors to the field and the type problem,
// without quoting input (a syntax error's context could hold a value).
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// Value can carry the literal ("number 1e999"); keep only its kind.
		kind, _, _ := strings.Cut(te.Value, " ")
		return fmt.Errorf("field %q: got JSON %s, want %s", te.Field, kind, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return errors.New("invalid RFC 3339 time")
	}
	return errors.New("invalid JSON")
}

// pingData is GET /ping's data; Features is absent on a server without extensions.
type pingData struct {
	Features []string `json:"features"`
}

// decodeFeatures keeps the known names, so a newer server's extensions are
// ignored rather than misread.
func decodeFeatures(data json.RawMessage) (Features, error) {
	var p pingData
	if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return Features{}, nil
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("malformed ping data: %w", describeJSONError(err))
	}
	out := Features{}
	for _, name := range p.Features {
		switch f := Feature(name); f {
		case FeatureUsage, FeatureClaim, FeatureUpdatedSince:
			if !out.Has(f) {
				out = append(out, f)
			}
		}
	}
	return out, nil
}
