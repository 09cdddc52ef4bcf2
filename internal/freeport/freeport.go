// Package freeport picks TCP ports for tests and test harnesses that must
// name an address before the process or node that listens on it starts.
//
// It picks below the kernel's ephemeral port range: a port the kernel hands
// out itself (to a listener on port 0, or as the local port of an outgoing
// connection) can be taken by any socket on the machine between the moment
// the picker lets it go and the moment its user binds it. Below that range
// only explicit binds compete.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lowest is the lowest port Listen picks.
const lowest = 20000

// tries bounds Listen's attempts at random ports.
const tries = 100

// Listen listens on host (an IP address) at a random free port below the
// ephemeral range. The caller holds the listener until every port it needs
// is chosen, so that none is picked twice, then closes it and hands the
// address on. Where the ephemeral range leaves fewer than 1000 ports above
// lowest (or cannot be read), it listens on port 0 instead.
func Listen(host string) (net.Listener, error) {
	high := ephemeralLow()
	if high-lowest < 1000 {
		return net.Listen("tcp", net.JoinHostPort(host, "0"))
	}
	for range tries {
		port := lowest + rand.IntN(high-lowest)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("freeport: %d random ports in [%d, %d) on %s were all in use", tries, lowest, high, host)
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 0
// when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	return parseRangeLow(string(b))
}

// parseRangeLow reads the first number of ip_local_port_range's text
// ("32768\t60999\n"), or 0.
func parseRangeLow(s string) int {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}
