package statusserver

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const (
	defaultPerPage = 25
	maxPerPage     = 100
	maxIdemKeyLen  = 255
)

func (s *Server) handlePing(w http.ResponseWriter, _ *http.Request) {
	s.counters.pingCalls.Add(1)
	s.writeData(w, http.StatusOK, map[string]string{"message": "pong"}, nil)
}

func (s *Server) handleSelf(w http.ResponseWriter, r *http.Request) {
	s.counters.selfCalls.Add(1)
	caller := callerFrom(r.Context())
	j := toTokenJSON(caller, s.clock())
	if s.store.IsAdmin(caller.ID) {
		role := "admin"
		j.Role = &role
	}
	s.writeData(w, http.StatusOK, j, nil)
}

func (s *Server) handleGetToken(w http.ResponseWriter, _ *http.Request, id string) {
	s.counters.getCalls.Add(1)
	t, ok := s.store.getToken(id)
	if !ok {
		s.writeError(w, http.StatusNotFound, "token not found")
		return
	}
	s.writeData(w, http.StatusOK, toTokenJSON(t, s.clock()), nil)
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	s.counters.listCalls.Add(1)
	q := r.URL.Query()
	page, perPage, err := parsePaging(q)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	f := tokenFilter{ExternalID: q.Get("external_id"), Status: q.Get("status")}
	if f.Status != "" && f.Status != statusActive && f.Status != statusInactive {
		s.writeError(w, http.StatusBadRequest, `status must be "active" or "inactive"`)
		return
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			s.writeError(w, http.StatusBadRequest, "label filter must be key=value")
			return
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		if prev, dup := f.Labels[k]; dup && prev != v {
			// Two values for one key can never both match.
			s.writeData(w, http.StatusOK, []tokenJSON{}, paging(page, perPage, 0))
			return
		}
		f.Labels[k] = v
	}
	now := s.clock()
	recs, total := s.store.listTokens(f, now, page, perPage)
	out := make([]tokenJSON, 0, len(recs))
	for _, rec := range recs {
		out = append(out, toTokenJSON(rec, now))
	}
	s.writeData(w, http.StatusOK, out, paging(page, perPage, total))
}

// parsePaging reads page (default 1) and per_page (default 25, at most 100).
func parsePaging(q url.Values) (page, perPage int, err error) {
	page, perPage = 1, defaultPerPage
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, badRequest("page must be a positive integer")
		}
	}
	if v := q.Get("per_page"); v != "" {
		if perPage, err = strconv.Atoi(v); err != nil || perPage < 1 {
			return 0, 0, badRequest("per_page must be a positive integer")
		}
		perPage = min(perPage, maxPerPage)
	}
	return page, perPage, nil
}

func paging(page, perPage, total int) *paginationJSON {
	pages := (total + perPage - 1) / perPage
	p := &paginationJSON{CurrentPage: page, PerPage: perPage, TotalPages: pages, TotalCount: total}
	if page < pages {
		next := page + 1
		p.NextPage = &next
	}
	return p
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	req, err := decodeCreateRequest(r.Body)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdemKeyLen {
		s.writeError(w, http.StatusBadRequest, "Idempotency-Key must be at most 255 characters")
		return
	}
	caller := callerFrom(r.Context())
	var cacheKey string
	if key != "" {
		cacheKey = idemKey(caller.ID, key)
		outcome, first := s.idem.begin(cacheKey, req.canonical(), s.clock())
		switch outcome {
		case idemMismatch:
			s.writeError(w, http.StatusUnprocessableEntity, "Idempotency-Key was already used with a different request body")
			return
		case idemInFlight:
			w.Header().Set("Retry-After", "1")
			s.writeError(w, http.StatusConflict, "a request with this Idempotency-Key is in progress")
			return
		case idemReplay:
			s.counters.replays.Add(1)
			w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(w, first.status, first.reply)
			return
		}
	}
	if s.hook != nil {
		s.hook(r.Context())
	}
	now := s.clock()
	if req.expiresAt != nil && !req.expiresAt.After(now) {
		if cacheKey != "" {
			s.idem.abandon(cacheKey)
		}
		s.writeError(w, http.StatusUnprocessableEntity, "invalid token request", "expires_at must be in the future")
		return
	}
	rec, value, err := s.store.createToken(req.params(), now)
	if err != nil {
		if cacheKey != "" {
			s.idem.abandon(cacheKey)
		}
		s.writeAPIError(w, r, err)
		return
	}
	s.counters.tokensCreated.Add(1)
	j := toTokenJSON(rec, now)
	j.Token = value
	body := encodeJSON(successEnvelope{Success: true, Data: j})
	if cacheKey != "" {
		s.idem.finish(cacheKey, http.StatusCreated, body, s.clock())
	}
	writeRaw(w, http.StatusCreated, body)
}

func (s *Server) handleDeactivate(w http.ResponseWriter, r *http.Request, id string) {
	drainBody(r)
	rec, err := s.store.deactivateToken(id, s.clock())
	if errors.Is(err, ErrNotFound) {
		s.writeError(w, http.StatusNotFound, "token not found")
		return
	}
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	s.counters.deactivations.Add(1)
	s.writeData(w, http.StatusOK, toTokenJSON(rec, s.clock()), nil)
}

func toBoardJSON(b boardRecord) boardJSON {
	return boardJSON{ID: b.ID, Name: b.Name, CreatedAt: b.CreatedAt}
}

func (s *Server) handleListBoards(w http.ResponseWriter, r *http.Request) {
	page, perPage, err := parsePaging(r.URL.Query())
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	recs, total := s.store.listBoards(page, perPage)
	out := make([]boardJSON, 0, len(recs))
	for _, b := range recs {
		out = append(out, toBoardJSON(b))
	}
	s.writeData(w, http.StatusOK, out, paging(page, perPage, total))
}

func (s *Server) handleCreateBoard(w http.ResponseWriter, r *http.Request) {
	req, err := decodeCreateBoardRequest(r.Body)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	b, err := s.store.createBoard(req.Name, s.clock())
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	s.writeData(w, http.StatusCreated, toBoardJSON(b), nil)
}

func (s *Server) handleGetBoard(w http.ResponseWriter, _ *http.Request, id string) {
	b, ok := s.store.getBoard(id)
	if !ok {
		s.writeError(w, http.StatusNotFound, "board not found")
		return
	}
	s.writeData(w, http.StatusOK, toBoardJSON(b), nil)
}

func (s *Server) handleDeleteBoard(w http.ResponseWriter, r *http.Request, id string) {
	b, ok := s.store.getBoard(id)
	if !ok {
		s.writeError(w, http.StatusNotFound, "board not found")
		return
	}
	if err := s.store.deleteBoard(id); err != nil {
		if errors.Is(err, ErrNotFound) {
			s.writeError(w, http.StatusNotFound, "board not found")
			return
		}
		s.writeAPIError(w, r, err)
		return
	}
	s.writeData(w, http.StatusOK, toBoardJSON(b), nil)
}
