// A small Go program for the .gopclntab reader's unit test: built stripped
// (no .symtab, no DWARF) as Debian builds Go programs, so only Go's own
// table names its functions.
package main

import "os"

type store struct{ bufs [][]byte }

//go:noinline
func leaf(n int) []byte { return make([]byte, n) }

//go:noinline
func (s *store) grow(n int) {
	s.bufs = append(s.bufs, leaf(n))
}

func main() {
	s := &store{}
	for i := 0; i < 10; i++ {
		s.grow(1 << i)
	}
	if len(os.Args) > 5 {
		println(len(s.bufs))
	}
}
