package statusserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// AdminTokenName names the bootstrap token.
const AdminTokenName = "bootstrap-admin"

// Config is what cmd/status-backend passes to Run.
type Config struct {
	// Listen is the TCP address, e.g. 127.0.0.1:8080.
	Listen string
	// DataPath is the bbolt file.
	DataPath string
	// AdminTokenFile, when set, holds the admin token value: an existing file
	// is imported (its hash stored), a missing one is created with a new value
	// (mode 0600). When empty, a first start prints a new admin token once.
	AdminTokenFile string
	// TLSCertFile and TLSKeyFile enable https when both are set.
	TLSCertFile, TLSKeyFile string
	// Latency is an artificial delay per request.
	Latency time.Duration
	// Logger receives request logs; default slog.Default().
	Logger *slog.Logger
	// Stdout receives the listening line and a generated admin token; default os.Stdout.
	Stdout io.Writer
	// Clock is the time source; default time.Now.
	Clock func() time.Time
	// DisabledFeatures switches protocol extensions off (see AllFeatures).
	DisabledFeatures []string
}

// Run serves until ctx is cancelled, then shuts down gracefully and flushes
// the store. It prints "status-backend listening on <base URL>" once the
// listener is open.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return errors.New("both --tls-cert and --tls-key are needed for TLS")
	}
	store, err := OpenStore(cfg.DataPath)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			cfg.Logger.Error("Failed to close store", "error", err)
		}
	}()
	if err := bootstrapAdmin(store, cfg); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler: New(Options{Store: store, Clock: cfg.Clock, Logger: cfg.Logger, Latency: cfg.Latency,
			DisabledFeatures: cfg.DisabledFeatures}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30*time.Second + cfg.Latency,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	errc := make(chan error, 1)
	go func() {
		if scheme == "https" {
			errc <- srv.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	fmt.Fprintf(cfg.Stdout, "status-backend listening on %s://%s%s\n", scheme, ln.Addr(), PathPrefix)

	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// bootstrapAdmin makes sure an admin credential exists, as Config.AdminTokenFile describes.
func bootstrapAdmin(store *Store, cfg Config) error {
	now := cfg.Clock()
	if cfg.AdminTokenFile == "" {
		if store.HasAdmin() {
			return nil
		}
		_, value, err := store.CreateAdminToken(AdminTokenName, now)
		if err != nil {
			return err
		}
		// Shown once on purpose: only its hash is kept.
		fmt.Fprintf(cfg.Stdout, "status-backend admin token (shown once): %s\n", value)
		return nil
	}
	data, err := os.ReadFile(cfg.AdminTokenFile)
	switch {
	case err == nil:
		created, err := store.ImportAdminToken(AdminTokenName, strings.TrimSpace(string(data)), now)
		if err != nil {
			return fmt.Errorf("admin token file %s: %w", cfg.AdminTokenFile, err)
		}
		if created {
			cfg.Logger.Info("Imported admin token", "file", cfg.AdminTokenFile)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		value := newTokenValue()
		f, err := os.OpenFile(cfg.AdminTokenFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("creating admin token file: %w", err)
		}
		_, werr := f.WriteString(value + "\n")
		if err := errors.Join(werr, f.Close()); err != nil {
			_ = os.Remove(cfg.AdminTokenFile)
			return fmt.Errorf("writing admin token file: %w", err)
		}
		if _, err := store.ImportAdminToken(AdminTokenName, value, now); err != nil {
			_ = os.Remove(cfg.AdminTokenFile)
			return err
		}
		cfg.Logger.Info("Created admin token", "file", cfg.AdminTokenFile)
		return nil
	default:
		return fmt.Errorf("reading admin token file: %w", err)
	}
}
