// SPDX-License-Identifier: Apache-2.0
//
// csic: the smallest CSI client the e2e harness needs to play kubelet's part
// on the node side (no kubelet runs in e2e/run.sh). One RPC per invocation;
// the answer is printed as JSON on stdout, errors as "csic: <code>: <msg>" on
// stderr with exit status 1.
//
//	csic -endpoint unix:///x.sock caps                      identity + controller + node capabilities
//	csic -endpoint ... info                                 NodeGetInfo (node id, max volumes, topology)
//	csic -endpoint ... stage   -id ID -staging DIR [-block] [-fs ext4] [-ctx k=v,...]
//	csic -endpoint ... publish -id ID -staging DIR -target PATH [-block] [-fs ext4] [-ctx k=v,...]
//	csic -endpoint ... unpublish -id ID -target PATH
//	csic -endpoint ... unstage -id ID -staging DIR
//	csic -endpoint ... expand  -id ID -path PATH -bytes N [-block] [-staging DIR]
//	csic -endpoint ... stats   -id ID -path PATH
//	csic -endpoint ... list                                ListVolumes, every page
//
// The volume context is passed exactly as the PV carries it
// (spec.csi.volumeAttributes), which is what kubelet does.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func die(err error) {
	if s, ok := status.FromError(err); ok {
		fmt.Fprintf(os.Stderr, "csic: %s: %s\n", s.Code(), s.Message())
	} else {
		fmt.Fprintf(os.Stderr, "csic: %v\n", err)
	}
	os.Exit(1)
}

func out(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		die(err)
	}
	fmt.Println(string(b))
}

func parseCtx(s string) map[string]string {
	m := map[string]string{}
	if s == "" {
		return m
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			die(fmt.Errorf("bad -ctx entry %q (want key=value)", kv))
		}
		m[k] = v
	}
	return m
}

func capability(block bool, fs string) *csi.VolumeCapability {
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{
		Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	if block {
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}}
	}
	return c
}

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/csi.sock")
	timeout := flag.Duration("timeout", 60*time.Second, "per-call deadline")
	flag.Parse()
	if *endpoint == "" || flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: csic -endpoint unix:///sock <caps|info|stage|publish|unpublish|unstage|expand|stats|list> [flags]")
		os.Exit(2)
	}
	cmd := flag.Arg(0)
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	id := fs.String("id", "", "volume id (the PV's spec.csi.volumeHandle)")
	staging := fs.String("staging", "", "staging path")
	target := fs.String("target", "", "publish target path")
	path := fs.String("path", "", "volume path (stats, expand)")
	block := fs.Bool("block", false, "block access type (default: mount)")
	fsType := fs.String("fs", "ext4", "filesystem type for mount access")
	vctx := fs.String("ctx", "", "volume context k=v,k=v (the PV's volumeAttributes)")
	bytes := fs.Int64("bytes", 0, "required bytes (expand)")
	_ = fs.Parse(flag.Args()[1:])

	sock := strings.TrimPrefix(*endpoint, "unix://")
	conn, err := grpc.NewClient("passthrough:///csi",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		die(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ids := csi.NewIdentityClient(conn)
	ctl := csi.NewControllerClient(conn)
	node := csi.NewNodeClient(conn)

	switch cmd {
	case "caps":
		info, err := ids.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
		if err != nil {
			die(err)
		}
		res := map[string]any{"name": info.GetName(), "vendorVersion": info.GetVendorVersion()}
		var plugin, controller, nodeCaps []string
		pc, err := ids.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
		if err != nil {
			die(err)
		}
		for _, c := range pc.GetCapabilities() {
			if s := c.GetService(); s != nil {
				plugin = append(plugin, s.GetType().String())
			}
			if e := c.GetVolumeExpansion(); e != nil {
				plugin = append(plugin, "VOLUME_EXPANSION_"+e.GetType().String())
			}
		}
		cc, err := ctl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
		if err != nil {
			die(err)
		}
		for _, c := range cc.GetCapabilities() {
			controller = append(controller, c.GetRpc().GetType().String())
		}
		nc, err := node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
		if err != nil {
			die(err)
		}
		for _, c := range nc.GetCapabilities() {
			nodeCaps = append(nodeCaps, c.GetRpc().GetType().String())
		}
		res["plugin"], res["controller"], res["node"] = plugin, controller, nodeCaps
		out(res)
	case "info":
		r, err := node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		if err != nil {
			die(err)
		}
		out(map[string]any{"nodeId": r.GetNodeId(), "maxVolumes": r.GetMaxVolumesPerNode(),
			"topology": r.GetAccessibleTopology().GetSegments()})
	case "stage":
		_, err = node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: *id,
			StagingTargetPath: *staging, VolumeCapability: capability(*block, *fsType),
			VolumeContext: parseCtx(*vctx)})
		if err != nil {
			die(err)
		}
		out(map[string]string{"staged": *id})
	case "publish":
		_, err = node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: *id,
			StagingTargetPath: *staging, TargetPath: *target,
			VolumeCapability: capability(*block, *fsType), VolumeContext: parseCtx(*vctx)})
		if err != nil {
			die(err)
		}
		out(map[string]string{"published": *id, "target": *target})
	case "unpublish":
		if _, err = node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: *id, TargetPath: *target}); err != nil {
			die(err)
		}
		out(map[string]string{"unpublished": *id})
	case "unstage":
		if _, err = node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: *id, StagingTargetPath: *staging}); err != nil {
			die(err)
		}
		out(map[string]string{"unstaged": *id})
	case "expand":
		r, err := node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: *id, VolumePath: *path,
			StagingTargetPath: *staging, CapacityRange: &csi.CapacityRange{RequiredBytes: *bytes},
			VolumeCapability: capability(*block, *fsType)})
		if err != nil {
			die(err)
		}
		out(map[string]int64{"capacityBytes": r.GetCapacityBytes()})
	case "stats":
		r, err := node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: *id, VolumePath: *path})
		if err != nil {
			die(err)
		}
		res := map[string]any{}
		for _, u := range r.GetUsage() {
			res[u.GetUnit().String()] = map[string]int64{"total": u.GetTotal(), "used": u.GetUsed(), "available": u.GetAvailable()}
		}
		out(res)
	case "list":
		var vols []map[string]any
		token := ""
		for page := 0; page < 10000; page++ {
			r, err := ctl.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token})
			if err != nil {
				die(err)
			}
			for _, e := range r.GetEntries() {
				vols = append(vols, map[string]any{"id": e.GetVolume().GetVolumeId(),
					"capacityBytes": e.GetVolume().GetCapacityBytes()})
			}
			if token = r.GetNextToken(); token == "" {
				break
			}
		}
		if vols == nil {
			vols = []map[string]any{}
		}
		out(vols)
	default:
		fmt.Fprintf(os.Stderr, "csic: unknown command %q\n", cmd)
		os.Exit(2)
	}
}
