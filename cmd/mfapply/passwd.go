package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/term"

	"mailfountain.dev/mailfountain/runtime/auth"
)

func (c *cli) passwd(_ context.Context, args []string) int {
	fs := c.flags("passwd")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	if code := c.noJSON("passwd"); code >= 0 {
		return code
	}
	pw, err := c.readPassword()
	if err != nil {
		return c.fail("passwd", err)
	}
	if err := auth.ValidatePassword(pw); err != nil {
		return c.fail("passwd", err)
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return c.fail("passwd", err)
	}
	fmt.Fprintln(c.stdout, hash)
	return exitOK
}

// readPassword asks twice on a terminal, without echo; otherwise it takes
// the first line of standard input, so that a script can pipe one in.
func (c *cli) readPassword() (string, error) {
	if !c.stdinTTY {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		if line == "" {
			return "", errors.New("no password on standard input")
		}
		return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
	}
	ask := func(prompt string) (string, error) {
		fmt.Fprint(c.stderr, prompt)
		b, err := term.ReadPassword(c.stdinFd)
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(b), nil
	}
	pw, err := ask("Password: ")
	if err != nil {
		return "", err
	}
	again, err := ask("Retype password: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("the passwords do not match")
	}
	return pw, nil
}
