package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/livecart/livecart/web/auth"
)

func parseServeFlags(args []string) (configPath string, err error) {
	fs := flag.NewFlagSet("livecart", flag.ContinueOnError)
	fs.StringVar(&configPath, "config", "", "YAML config file (see configs/)")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unknown argument %q (subcommands: token)", fs.Arg(0))
	}
	return configPath, nil
}

// runToken mints a token: livecart token --role R --user U --name N --ttl D.
func runToken(args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("livecart token", flag.ContinueOnError)
	role := fs.String("role", "viewer", "viewer | creator | moderator | admin")
	user := fs.String("user", "", "user id (the token's sub), up to 128 characters")
	name := fs.String("name", "", "display name (default: the user id)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	configPath := fs.String("config", "", "YAML config file (for the secret and data dir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 { // parsing stopped there: the flags after it would be lost
		return fmt.Errorf("token: unexpected argument %q (quote a --name with spaces)", fs.Arg(0))
	}
	if *user == "" {
		return errors.New("token: --user is required")
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	secret, _, err := loadSecret(cfg, false)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = *user
	}
	tok, err := auth.New(secret, nil).Mint(auth.Identity{UserID: *user, Name: *name, Role: auth.Role(*role)}, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
