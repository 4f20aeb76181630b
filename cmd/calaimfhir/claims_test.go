package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestServe_BadClaimsCatalogStopsStart(t *testing.T) {
	dir := t.TempDir()
	err := serve(context.Background(), []string{"--data", dir, "--addr", "127.0.0.1:0",
		"--claims-catalog", filepath.Join(dir, "missing.json")}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "claims catalog") {
		t.Fatalf("err %v, want the claims catalog error", err)
	}
}
