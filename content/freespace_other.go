//go:build !(linux || darwin || freebsd)

package content

import "errors"

func freeSpace(string) (int64, error) { return 0, errors.ErrUnsupported }
