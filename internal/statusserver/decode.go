package statusserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	permReadOnly   = "read_only"
	permFullAccess = "full_access"
	statusActive   = "active"
	statusInactive = "inactive"
	roleAdmin      = "admin"

	maxNameLen = 200
	// maxDescriptionLen is the protocol's limit, in bytes of UTF-8; the
	// APIToken CRD validates the same, so an admitted description is never refused here.
	maxDescriptionLen = 255
	maxExternalIDLen  = 256
	maxLabels         = 64
	maxLabelKeyLen    = 63
	maxLabelValueLen  = 253
)

// maxExpiresAt is the protocol's bound on reply timestamps; a token that
// expires later could never be read back by a conforming client.
var maxExpiresAt = time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)

// apiError is a client error with the status and message to send.
type apiError struct {
	Status  int
	Message string
	Errors  []string
}

// Error returns the message sent to the client.
func (e *apiError) Error() string { return e.Message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// createTokenRequest is the decoded, validated body of POST /api_tokens.
type createTokenRequest struct {
	Name        string            `json:"name"`
	Permission  string            `json:"permission"`
	ExpiresAt   *string           `json:"expires_at"`
	Description string            `json:"description"`
	ExternalID  *string           `json:"external_id"`
	Labels      map[string]string `json:"labels"`

	expiresAt *time.Time
}

// canonical is the request re-encoded, so idempotency compares meaning
// rather than whitespace and key order.
func (r *createTokenRequest) canonical() []byte {
	var exp string
	if r.expiresAt != nil {
		exp = r.expiresAt.UTC().Format(time.RFC3339Nano)
	}
	ext := ""
	if r.ExternalID != nil {
		ext = *r.ExternalID
	}
	// json.Marshal of these types cannot fail; map keys are sorted.
	b, _ := json.Marshal([]any{r.Name, r.Permission, exp, r.Description, ext, r.Labels})
	return b
}

func (r *createTokenRequest) params() tokenParams {
	p := tokenParams{
		Name:        r.Name,
		Description: r.Description,
		Permission:  r.Permission,
		ExpiresAt:   r.expiresAt,
		Labels:      r.Labels,
	}
	if r.ExternalID != nil {
		p.ExternalID = *r.ExternalID
	}
	return p
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data, with messages that name the offending field.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeDecodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return describeDecodeError(err)
		}
		return badRequest("request body must hold a single JSON object")
	}
	return nil
}

func describeDecodeError(err error) error {
	var (
		mbe *http.MaxBytesError
		te  *json.UnmarshalTypeError
		se  *json.SyntaxError
	)
	switch {
	case errors.As(err, &mbe):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("request body must be a JSON object")
		}
		return badRequest("field %q must be %s, got %s", te.Field, jsonTypeName(te.Type.String()), te.Value)
	case errors.As(err, &se):
		return badRequest("malformed JSON at offset %d", se.Offset)
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if len(name) > 66 {
			name = name[:64] + `…"`
		}
		return badRequest("unknown field %s", name)
	default:
		return badRequest("malformed JSON")
	}
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string" || goType == "*string":
		return "a string"
	case strings.HasPrefix(goType, "map["):
		return "an object of strings"
	default:
		return goType
	}
}

// decodeCreateRequest reads and validates a create body. Syntax and type
// problems are 400; values that parse but are not acceptable are 422.
func decodeCreateRequest(r io.Reader) (*createTokenRequest, error) {
	var req createTokenRequest
	if err := decodeStrict(r, &req); err != nil {
		return nil, err
	}
	var problems []string
	if strings.TrimSpace(req.Name) == "" {
		problems = append(problems, "name must not be empty")
	}
	problems = append(problems, checkText("name", req.Name, maxNameLen)...)
	problems = append(problems, checkText("description", req.Description, maxDescriptionLen)...)
	if req.Permission != permReadOnly && req.Permission != permFullAccess {
		problems = append(problems, `permission must be "read_only" or "full_access"`)
	}
	if req.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *req.ExpiresAt)
		switch {
		case err != nil:
			problems = append(problems, "expires_at must be an RFC 3339 time")
		case !t.Before(maxExpiresAt):
			// Clients treat later times in a reply as a protocol error.
			problems = append(problems, "expires_at must be before 9000-01-01")
		default:
			req.expiresAt = &t
		}
	}
	if req.ExternalID != nil {
		problems = append(problems, checkText("external_id", *req.ExternalID, maxExternalIDLen)...)
		if *req.ExternalID == "" {
			req.ExternalID = nil
		}
	}
	if len(req.Labels) > maxLabels {
		problems = append(problems, fmt.Sprintf("at most %d labels", maxLabels))
	}
	for k, v := range req.Labels {
		if k == "" || strings.ContainsAny(k, "=") || len(k) > maxLabelKeyLen || !utf8.ValidString(k) {
			problems = append(problems, "label keys must be 1-63 characters without '='")
			break
		}
		if len(v) > maxLabelValueLen || !utf8.ValidString(v) {
			problems = append(problems, "label values must be at most 253 characters")
			break
		}
	}
	if len(problems) > 0 {
		return nil, &apiError{Status: http.StatusUnprocessableEntity, Message: "invalid token request", Errors: problems}
	}
	return &req, nil
}

func checkText(field, v string, maxLen int) []string {
	if len(v) > maxLen {
		return []string{fmt.Sprintf("%s must be at most %d bytes", field, maxLen)}
	}
	if !utf8.ValidString(v) {
		return []string{field + " must be valid UTF-8"}
	}
	for _, r := range v {
		// Tab is allowed and DEL is not, as in the CRD's rule for description.
		if (r < ' ' && r != '\t') || r == 0x7f {
			return []string{field + " must be one line without control characters"}
		}
	}
	return nil
}

// claimRequest is the body of POST /api_tokens/{id}/claim.
type claimRequest struct {
	ExternalID string `json:"external_id"`
}

func decodeClaimRequest(r io.Reader) (*claimRequest, error) {
	var req claimRequest
	if err := decodeStrict(r, &req); err != nil {
		return nil, err
	}
	problems := checkText("external_id", req.ExternalID, maxExternalIDLen)
	if req.ExternalID == "" {
		problems = append(problems, "external_id must not be empty")
	}
	if len(problems) > 0 {
		return nil, &apiError{Status: http.StatusUnprocessableEntity, Message: "invalid claim request", Errors: problems}
	}
	return &req, nil
}

// createBoardRequest is the body of POST /boards.
type createBoardRequest struct {
	Name string `json:"name"`
}

func decodeCreateBoardRequest(r io.Reader) (*createBoardRequest, error) {
	var req createBoardRequest
	if err := decodeStrict(r, &req); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Name) == "" {
		return nil, &apiError{Status: http.StatusUnprocessableEntity, Message: "invalid board request", Errors: []string{"name must not be empty"}}
	}
	if p := checkText("name", req.Name, maxNameLen); p != nil {
		return nil, &apiError{Status: http.StatusUnprocessableEntity, Message: "invalid board request", Errors: p}
	}
	return &req, nil
}
