// Package archtest checks the module's layering: which packages may import
// which. It has no code of its own, only the test that walks the source tree.
package archtest
