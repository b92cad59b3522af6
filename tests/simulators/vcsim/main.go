// Command vcsim is patchwave's vCenter simulator launcher: govmomi's simulator package (vcsim 0.24 as
// Debian ships it) plus an HTTP middleware in front of /sdk that adds what a patch orchestrator needs
// and stock vcsim lacks (host reboot, HostPatchManager, evacuation on maintenance mode, guest info,
// task/Fetch fixes) and a runtime fault injector. See README.md next to this file.
//
// Build (no network, Debian's Go + govmomi):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o .cache/vcsim/vcsim ./tests/simulators/vcsim
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	listen, certOut, user, pass        string
	useTLS, balance, autostart, raw    bool
	dc, cluster, host, standalone, vm  int
	ds                                 int
	vcVersion, esxVersion, esxBuild    string
	patchTo                            string
	hostVersions, faults, methodDelays multiFlag
	rebootMs, delay                    int
	sessionIdle                        time.Duration
}

func parseFlags() *options {
	o := &options{}
	flag.StringVar(&o.listen, "l", "127.0.0.1:0", "listen address host:port (port 0 = pick a free one)")
	flag.BoolVar(&o.useTLS, "tls", true, "serve https with a freshly generated P-256 certificate")
	flag.StringVar(&o.certOut, "cert-out", "", "write the server certificate (PEM) to this file")
	flag.StringVar(&o.user, "user", "patchwave", "the only accepted user name")
	flag.StringVar(&o.pass, "pass", "vcsim-pass", "the only accepted password")
	flag.IntVar(&o.dc, "dc", 1, "datacenters")
	flag.IntVar(&o.cluster, "cluster", 1, "clusters per datacenter")
	flag.IntVar(&o.host, "host", 4, "hosts per cluster")
	flag.IntVar(&o.standalone, "standalone-host", 0, "standalone hosts per datacenter")
	flag.IntVar(&o.vm, "vm", 8, "VMs per cluster (and per standalone host)")
	flag.IntVar(&o.ds, "ds", 1, "datastores per datacenter")
	flag.BoolVar(&o.autostart, "autostart", true, "power on the VMs the model creates")
	flag.BoolVar(&o.balance, "balance", false, "place VMs round-robin over their cluster's hosts (vcsim places them randomly)")
	flag.StringVar(&o.vcVersion, "vc-version", "", "vCenter about: VERSION:APIVERSION:BUILD, e.g. 8.0.3:8.0.3.0:24322831")
	flag.StringVar(&o.esxVersion, "esx-version", "7.0.3", "ESXi version of every host")
	flag.StringVar(&o.esxBuild, "esx-build", "21930508", "ESXi build of every host")
	flag.Var(&o.hostVersions, "host-version", "per-host override NAME=VERSION:BUILD (repeatable)")
	flag.StringVar(&o.patchTo, "patch-to", "7.0.3:23307199", "VERSION:BUILD that InstallHostPatchV2 stages and RebootHost applies")
	flag.IntVar(&o.rebootMs, "host-reboot-ms", 1500, "how long a rebooting host stays notResponding")
	flag.BoolVar(&o.raw, "raw", false, "stock vcsim behaviour: no extensions/fixes (stats and fault rules stay)")
	flag.Var(&o.faults, "fault", "fault rule method=M[,target=T][,fault=F][,mode=M][,count=N][,skip=N][,delay=ms][,status=N][,msg=S] (repeatable)")
	flag.IntVar(&o.delay, "delay", 0, "vcsim-native delay in ms before every SOAP call")
	flag.Var(&o.methodDelays, "method-delay", "vcsim-native per-method delay METHOD=ms (repeatable)")
	flag.DurationVar(&o.sessionIdle, "session-idle", 0, "expire idle sessions after this duration (0 = never)")
	flag.Parse()
	return o
}

func splitVersion(s string) (string, string, error) {
	parts := strings.SplitN(s, ":", 2)
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("want VERSION:BUILD, got %q", s)
	}
	return parts[0], parts[1], nil
}

func buildModel(o *options) (*simulator.Model, error) {
	m := simulator.VPX()
	m.Datacenter, m.Cluster, m.ClusterHost, m.Host = o.dc, o.cluster, o.host, o.standalone
	m.Machine, m.Datastore, m.Autostart = o.vm, o.ds, o.autostart
	m.Portgroup = 0
	if o.vcVersion != "" {
		parts := strings.Split(o.vcVersion, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("-vc-version wants VERSION:APIVERSION:BUILD")
		}
		about := &m.ServiceContent.About
		about.Version, about.ApiVersion, about.Build = parts[0], parts[1], parts[2]
		about.FullName = fmt.Sprintf("VMware vCenter Server %s build-%s", parts[0], parts[2])
	}
	m.DelayConfig.Delay = o.delay
	m.DelayConfig.MethodDelay = map[string]int{}
	for _, md := range o.methodDelays {
		name, ms, ok := strings.Cut(md, "=")
		n, err := strconv.Atoi(ms)
		if !ok || err != nil {
			return nil, fmt.Errorf("-method-delay wants METHOD=ms, got %q", md)
		}
		m.DelayConfig.MethodDelay[name] = n
	}
	return m, m.Create()
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	o := parseFlags()
	if o.sessionIdle > 0 {
		simulator.SessionIdleTimeout = o.sessionIdle
	}
	model, err := buildModel(o)
	if err != nil {
		log.Fatalf("model: %v", err)
	}
	defer model.Remove()

	x, err := newExtension(o)
	if err != nil {
		log.Fatalf("extension: %v", err)
	}
	x.prepareInventory()

	faults, err := newFaultBook(o.faults)
	if err != nil {
		log.Fatalf("-fault: %v", err)
	}

	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		log.Fatalf("-l: %v", err)
	}
	model.Service.Listen = &url.URL{Host: o.listen, User: url.UserPassword(o.user, o.pass)}
	var certPEM []byte
	if o.useTLS {
		cert, pemBytes, err := newCertificate(host)
		if err != nil {
			log.Fatalf("certificate: %v", err)
		}
		certPEM = pemBytes
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	server := model.Service.NewServer()
	defer server.Close()

	// Swap the handler before any client can connect: the listener accepts, but nothing has the
	// address yet (we print it below).
	mw := &middleware{next: server.Config.Handler, ext: x, faults: faults, stats: newStats(), pager: newPager(), hook: &hookBook{}}
	server.Config.Handler = mw

	if o.certOut != "" && certPEM != nil {
		if err := os.WriteFile(o.certOut, certPEM, 0o644); err != nil {
			log.Fatalf("-cert-out: %v", err)
		}
	}
	u := *server.URL
	u.User = nil
	ready := map[string]any{
		"url":     u.String(),
		"host":    u.Hostname(),
		"port":    u.Port(),
		"user":    o.user,
		"cert":    o.certOut,
		"control": fmt.Sprintf("%s://%s/vcsim-control", u.Scheme, u.Host),
		"hosts":   len(simulator.Map.All("HostSystem")),
		"vms":     len(simulator.Map.All("VirtualMachine")),
		"pid":     os.Getpid(),
	}
	line, _ := json.Marshal(ready)
	fmt.Printf("VCSIM_READY %s\n", line)
	_ = os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	log.Printf("stopping")
}
