package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	Permission    Permission        `json:"permission"`
	Status        TokenStatus       `json:"status"`
	ExpiresAt     *time.Time        `json:"expires_at"`
	LastUsedAt    *time.Time        `json:"last_used_at"`
	CreatedAt     time.Time         `json:"created_at"`
	DeactivatedAt *time.Time        `json:"deactivated_at"`
	Last4         string            `json:"last4"`
	ExternalID    *string           `json:"external_id"`
	Labels        map[string]string `json:"labels"`
	Role          *string           `json:"role"`
	// Token is the value, present only in a create reply.
	Token string `json:"token"`
}

// createBody is the POST /api_tokens request.
type createBody struct {
	Name        string            `json:"name"`
	Permission  Permission        `json:"permission"`
	ExpiresAt   *time.Time        `json:"expires_at,omitempty"`
	Description string            `json:"description,omitempty"`
	ExternalID  *string           `json:"external_id,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
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

func (w *tokenWire) check() error {
	if w.ID == "" {
		return errors.New("token object has no id")
	}
	switch w.Status {
	case StatusActive, StatusInactive:
	default:
		return errors.New("token object has an unknown status")
	}
	return nil
}

// describeJSONError shortens decoder errors to the field and the type problem,
// without quoting input (a syntax error's context could hold a value).
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q: got JSON %s, want %s", te.Field, te.Value, te.Type)
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
