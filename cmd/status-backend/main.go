// Command status-backend runs the reference status backend (the protocol the
// operator issues tokens against). All logic lives in internal/statusserver.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/statusops/apitoken-operator/internal/statusserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "status-backend:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg      statusserver.Config
		logLevel slog.Level
	)
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "TCP address to listen on")
	flag.StringVar(&cfg.DataPath, "data", "./status-backend.db", "bbolt data file")
	flag.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "admin token file: imported if present, created (0600) if absent")
	flag.StringVar(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate file (PEM); enables https with --tls-key")
	flag.StringVar(&cfg.TLSKeyFile, "tls-key", "", "TLS private key file (PEM)")
	flag.DurationVar(&cfg.Latency, "latency", 0, "artificial latency added to every request")
	flag.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	flag.Func("disable-features", "comma-separated protocol extensions to switch off: "+strings.Join(statusserver.AllFeatures, ", "),
		func(v string) (err error) { cfg.DisabledFeatures, err = statusserver.ParseFeatures(v); return err })
	flag.Parse()

	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return statusserver.Run(ctx, cfg)
}
