// cnidriver: a cnitool-compatible CNI runtime driver on Debian's libcni, for multiplane's tests.
//
// Usage (as cnitool): cnidriver add|check|del <network-name> <netns-path>
//
// Environment, as cnitool reads it: NETCONFPATH (default /etc/cni/net.d), CNI_PATH,
// CNI_ARGS ("K=V;K2=V2"), CAP_ARGS (a JSON object of capability args), CNI_IFNAME
// (default eth0), CNI_CACHE_DIR (default /var/lib/cni), CNI_CONTAINERID (default: cnitool's
// "cnitool-" + hex(sha512(abs netns))[:20]). ADD prints the result; errors go to stderr,
// exit status 1.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func parseArgs(text string) [][2]string {
	var out [][2]string
	if text == "" {
		return out
	}
	for _, pair := range strings.Split(text, ";") {
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) != 2 || kv[0] == "" {
			fail("invalid CNI_ARGS pair %q", pair)
		}
		out = append(out, [2]string{kv[0], kv[1]})
	}
	return out
}

func main() {
	if len(os.Args) < 4 {
		fail("usage: %s add|check|del <net> <netns>", filepath.Base(os.Args[0]))
	}
	command, netName, netns := os.Args[1], os.Args[2], os.Args[3]
	confDir := os.Getenv("NETCONFPATH")
	if confDir == "" {
		confDir = "/etc/cni/net.d"
	}
	cacheDir := os.Getenv("CNI_CACHE_DIR")
	if cacheDir == "" {
		cacheDir = "/var/lib/cni"
	}
	netconf, err := libcni.LoadConfList(confDir, netName)
	if err != nil {
		fail("%v", err)
	}
	var capArgs map[string]interface{}
	if text := os.Getenv("CAP_ARGS"); text != "" {
		if err := json.Unmarshal([]byte(text), &capArgs); err != nil {
			fail("invalid CAP_ARGS: %v", err)
		}
	}
	ifName, ok := os.LookupEnv("CNI_IFNAME")
	if !ok {
		ifName = "eth0"
	}
	absNetns, err := filepath.Abs(netns)
	if err != nil {
		fail("%v", err)
	}
	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" {
		sum := sha512.Sum512([]byte(absNetns))
		containerID = fmt.Sprintf("cnitool-%x", sum[:10])
	}
	cninet := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), cacheDir, nil)
	rt := &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          absNetns,
		IfName:         ifName,
		Args:           parseArgs(os.Getenv("CNI_ARGS")),
		CapabilityArgs: capArgs,
	}
	if command == "del" && os.Getenv("CNI_DRIVER_EMPTY_NETNS") == "1" {
		rt.NetNS = "" // as containerd's second DEL (RemovePodSandbox) sends it
	}
	ctx := context.TODO()
	switch command {
	case "add":
		result, err := cninet.AddNetworkList(ctx, netconf, rt)
		if result != nil {
			_ = result.Print()
		}
		if err != nil {
			fail("%v", err)
		}
	case "check":
		if err := cninet.CheckNetworkList(ctx, netconf, rt); err != nil {
			fail("%v", err)
		}
	case "del":
		if err := cninet.DelNetworkList(ctx, netconf, rt); err != nil {
			fail("%v", err)
		}
	default:
		fail("unknown command %q", command)
	}
}
