// SPDX-License-Identifier: Apache-2.0
//
// registrar: the e2e harness's stand-in for node-driver-registrar (whose Go module
// the module proxy here refuses with 403, see docs/e2e.md). It does the one thing
// kubelet needs to learn about a CSI node plugin: it serves kubelet's plugin
// registration API (k8s.io/kubelet/pkg/apis/pluginregistration/v1) on a socket in
// kubelet's plugins_registry directory. kubelet's plugin watcher finds the socket,
// calls GetInfo (type CSIPlugin, the driver name, the CSI endpoint kubelet should
// dial, the CSI versions), then NodeGetInfo on the driver itself, writes the
// CSINode entry and the Node's topology labels, and reports the outcome with
// NotifyRegistrationStatus, which we log and count.
//
// Usage: registrar -driver NAME -csi-endpoint /path/csi.sock -reg-dir DIR
// Exits 0 on SIGTERM/SIGINT, removing its socket.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	reg "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type server struct {
	reg.UnimplementedRegistrationServer
	driver, endpoint string
}

func (s *server) GetInfo(ctx context.Context, _ *reg.InfoRequest) (*reg.PluginInfo, error) {
	log.Printf("GetInfo: driver=%s endpoint=%s", s.driver, s.endpoint)
	return &reg.PluginInfo{
		Type:              reg.CSIPlugin,
		Name:              s.driver,
		Endpoint:          s.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (s *server) NotifyRegistrationStatus(ctx context.Context, st *reg.RegistrationStatus) (*reg.RegistrationStatusResponse, error) {
	if st.PluginRegistered {
		log.Printf("registered with kubelet")
	} else {
		log.Printf("registration FAILED: %s", st.Error)
	}
	return &reg.RegistrationStatusResponse{}, nil
}

func main() {
	driver := flag.String("driver", "", "CSI driver name")
	endpoint := flag.String("csi-endpoint", "", "path of the driver's CSI socket, as kubelet should dial it")
	dir := flag.String("reg-dir", "", "kubelet's plugins_registry directory")
	flag.Parse()
	if *driver == "" || *endpoint == "" || *dir == "" {
		log.Fatal("need -driver, -csi-endpoint and -reg-dir")
	}
	sock := filepath.Join(*dir, *driver+"-reg.sock")
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatalf("listen %s: %v", sock, err)
	}
	g := grpc.NewServer()
	reg.RegisterRegistrationServer(g, &server{driver: *driver, endpoint: *endpoint})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; g.Stop() }()
	log.Printf("serving kubelet registration on %s", sock)
	if err := g.Serve(l); err != nil {
		log.Printf("serve: %v", err)
	}
	_ = os.Remove(sock)
}
