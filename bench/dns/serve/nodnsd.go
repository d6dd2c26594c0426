//go:build !dnsd

package main

import (
	"context"
	"errors"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// serve without runtime/dnsd: see dnsd.go.
func serve(context.Context, *dnszone.Live, string) error {
	return errors.New("built without runtime/dnsd: build with -tags dnsd once runtime/dnsd is on main (see dnsd.go)")
}
