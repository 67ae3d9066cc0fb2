package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// SecretEnv names the environment variable that may hold the relay secret.
const SecretEnv = "SUPERNET_RELAY_SECRET"

// ReadSecret reads the secret the supernodes and relays share: from path, which
// only its owner may read, or else from $SUPERNET_RELAY_SECRET. It returns nil
// when neither is given.
func ReadSecret(path string) ([]byte, error) {
	if path == "" {
		if s := strings.TrimSpace(os.Getenv(SecretEnv)); s != "" {
			return []byte(s), nil
		}
		return nil, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("relay secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("relay secret %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("relay secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 16 {
		return nil, errors.New("relay secret: shorter than 16 characters")
	}
	return []byte(s), nil
}
