package fusefs

import (
	"os"
	"strings"
)

// inInitialUserNS reports whether this process runs in the host's user
// namespace: its uid map is the identity over every id. Inside a user
// namespace nothing that reaches the union through it holds
// CAP_SYS_ADMIN over the host, which trusted.* xattrs need.
func inInitialUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true // no /proc: assume the host's, and hide nothing
	}
	return strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295"
}
