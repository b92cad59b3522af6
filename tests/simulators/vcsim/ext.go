package main

// The extensions: state and behaviour that stock vcsim 0.24 lacks. New managed objects (a
// HostPatchManager per host, and "reroute" objects that serve methods vcsim's HostSystem and
// VirtualMachine do not implement) are registered as *new* types: wrapping vcsim's own types is
// fragile because vcsim type-asserts them internally.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	hostExtType = "PatchwaveHostExt" // reroute target for HostSystem methods
	vmExtType   = "PatchwaveVmExt"   // reroute target for VirtualMachine methods
)

// rerouted maps "Type.Method" to the ext type that serves it.
var rerouted = map[string]string{
	"HostSystem.RebootHost_Task":             hostExtType,
	"HostSystem.EnterMaintenanceMode_Task":   hostExtType,
	"HostSystem.ExitMaintenanceMode_Task":    hostExtType,
	"VirtualMachine.RebootGuest":             vmExtType,
	"VirtualMachine.ConsolidateVMDisks_Task": vmExtType,
}

type maintenanceEvent struct {
	Time    string `json:"time"`
	Host    string `json:"host"`
	Cluster string `json:"cluster"`
	Event   string `json:"event"` // enter | exit
	InMM    int    `json:"in_maintenance"`
}

type extension struct {
	opts                     *options
	patchVersion, patchBuild string

	mu            sync.Mutex
	staged        map[string][2]string // host moref -> version, build (applied on reboot)
	mmEvents      []maintenanceEvent
	maxConcurrent map[string]int // cluster -> max hosts in maintenance at once
}

func newExtension(o *options) (*extension, error) {
	v, b, err := splitVersion(o.patchTo)
	if err != nil {
		return nil, fmt.Errorf("-patch-to: %w", err)
	}
	return &extension{opts: o, patchVersion: v, patchBuild: b,
		staged: map[string][2]string{}, maxConcurrent: map[string]int{}}, nil
}

func hosts() []*simulator.HostSystem {
	var out []*simulator.HostSystem
	for _, e := range simulator.Map.All("HostSystem") {
		out = append(out, e.(*simulator.HostSystem))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func vms() []*simulator.VirtualMachine {
	var out []*simulator.VirtualMachine
	for _, e := range simulator.Map.All("VirtualMachine") {
		out = append(out, e.(*simulator.VirtualMachine))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func hostCluster(h *simulator.HostSystem) string {
	if h.Parent == nil {
		return ""
	}
	if h.Parent.Type != "ClusterComputeResource" {
		return h.Name // a standalone host is its own failure domain
	}
	if c, ok := simulator.Map.Get(*h.Parent).(*simulator.ClusterComputeResource); ok {
		return c.Name
	}
	return h.Parent.Value
}

// prepareInventory runs once, before the server accepts clients.
func (x *extension) prepareInventory() {
	for _, h := range hosts() {
		version, build := x.opts.esxVersion, x.opts.esxBuild
		for _, hv := range x.opts.hostVersions {
			name, vb, _ := strings.Cut(hv, "=")
			if name == h.Name {
				if v, b, err := splitVersion(vb); err == nil {
					version, build = v, b
				}
			}
		}
		setProduct(h, version, build, false)
		if x.opts.raw {
			continue
		}
		pm := &patchManager{ext: x, host: h.Self}
		pm.Self = types.ManagedObjectReference{Type: "HostPatchManager", Value: "patchManager-" + h.Self.Value}
		simulator.Map.Put(pm)
		ref := pm.Self
		h.ConfigManager.PatchManager = &ref
		he := &hostExt{ext: x, host: h.Self}
		he.Self = types.ManagedObjectReference{Type: hostExtType, Value: h.Self.Value}
		simulator.Map.Put(he)
	}
	if x.opts.balance {
		balance()
	}
	if !x.opts.raw {
		for _, vm := range vms() {
			syncGuest(vm)
		}
	}
}

func setProduct(h *simulator.HostSystem, version, build string, notify bool) {
	about := h.Config.Product
	about.Version, about.Build = version, build
	about.FullName = fmt.Sprintf("VMware ESXi %s build-%s", version, build)
	summary := about
	if !notify {
		h.Config.Product = about
		h.Summary.Config.Product = &summary
		return
	}
	simulator.Map.Update(h, []types.PropertyChange{
		{Name: "config.product", Val: about},
		{Name: "summary.config.product", Val: &summary},
	})
}

// balance places each cluster's VMs round-robin over the cluster's hosts, sorted by name.
func balance() {
	byCluster := map[types.ManagedObjectReference][]*simulator.HostSystem{}
	for _, h := range hosts() {
		if h.Parent != nil && h.Parent.Type == "ClusterComputeResource" {
			byCluster[*h.Parent] = append(byCluster[*h.Parent], h)
		}
	}
	for _, members := range byCluster {
		owned := map[types.ManagedObjectReference]bool{}
		for _, h := range members {
			owned[h.Self] = true
			h.Vm = nil
		}
		i := 0
		for _, vm := range vms() {
			if vm.Runtime.Host == nil || !owned[*vm.Runtime.Host] {
				continue
			}
			h := members[i%len(members)]
			i++
			ref := h.Self
			vm.Runtime.Host = &ref
			vm.Summary.Runtime.Host = &ref
			h.Vm = append(h.Vm, vm.Self)
		}
	}
}

// moveVM re-homes a VM (the host.vm lists included, which vcsim's RelocateVM forgets).
func moveVM(vm *simulator.VirtualMachine, src, dst *simulator.HostSystem) {
	simulator.Map.WithLock(src, func() { simulator.RemoveReference(&src.Vm, vm.Self) })
	simulator.Map.WithLock(dst, func() { dst.Vm = append(dst.Vm, vm.Self) })
	ref := dst.Self
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.host", Val: &ref},
			{Name: "summary.runtime.host", Val: &ref},
		})
	})
}

// syncGuest makes guest info follow the power state, as VMware Tools would report it.
func syncGuest(vm *simulator.VirtualMachine) {
	on := vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	g := types.GuestInfo{GuestState: "notRunning", ToolsRunningStatus: "guestToolsNotRunning",
		ToolsStatus: types.VirtualMachineToolsStatusToolsNotRunning, ToolsVersionStatus2: "guestToolsCurrent",
		GuestId: "ubuntu64Guest", GuestFullName: "Ubuntu Linux (64-bit)", GuestFamily: "linuxGuest"}
	if vm.Guest != nil && vm.Guest.GuestState == "running" == on && vm.Guest.ToolsVersionStatus2 != "" {
		return // already in sync
	}
	if on {
		n, _ := strconv.Atoi(strings.TrimPrefix(vm.Self.Value, "vm-"))
		g.GuestState, g.ToolsRunningStatus, g.ToolsStatus = "running", "guestToolsRunning", types.VirtualMachineToolsStatusToolsOk
		g.IpAddress = fmt.Sprintf("10.20.%d.%d", n/250, n%250+1)
		g.HostName = strings.ToLower(vm.Name)
		g.GuestOperationsReady = types.NewBool(true)
	}
	summary := types.VirtualMachineGuestSummary{GuestId: g.GuestId, GuestFullName: g.GuestFullName,
		ToolsStatus: g.ToolsStatus, ToolsVersionStatus2: g.ToolsVersionStatus2,
		ToolsRunningStatus: g.ToolsRunningStatus, HostName: g.HostName, IpAddress: g.IpAddress}
	// VMware Tools heartbeats: green while the tools run, gray otherwise (vcsim leaves the
	// top-level guestHeartbeatStatus unset and quickStats gray whatever the power state).
	heartbeat := types.ManagedEntityStatusGray
	if on {
		heartbeat = types.ManagedEntityStatusGreen
	}
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "guest", Val: &g},
			{Name: "summary.guest", Val: &summary},
			{Name: "guestHeartbeatStatus", Val: heartbeat},
			{Name: "summary.quickStats.guestHeartbeatStatus", Val: heartbeat},
		})
	})
}

func (x *extension) recordMaintenance(h *simulator.HostSystem, event string) {
	cluster := hostCluster(h)
	n := 0
	for _, other := range hosts() {
		if hostCluster(other) == cluster && other.Runtime.InMaintenanceMode {
			n++
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mmEvents = append(x.mmEvents, maintenanceEvent{Time: time.Now().UTC().Format(time.RFC3339Nano),
		Host: h.Name, Cluster: cluster, Event: event, InMM: n})
	if n > x.maxConcurrent[cluster] {
		x.maxConcurrent[cluster] = n
	}
}

// ------------------------------------------------------------------------------------------
// Host methods served by the extension (rerouted from HostSystem)
// ------------------------------------------------------------------------------------------

type hostExt struct {
	mo.ExtensibleManagedObject
	ext  *extension
	host types.ManagedObjectReference
}

func (h *hostExt) hostSystem() *simulator.HostSystem {
	return simulator.Map.Get(h.host).(*simulator.HostSystem)
}

func (h *hostExt) EnterMaintenanceModeTask(ctx *simulator.Context, req *types.EnterMaintenanceMode_Task) soap.HasFault {
	host := h.hostSystem()
	task := simulator.CreateTask(host, "enterMaintenanceMode", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if host.Runtime.InMaintenanceMode {
			return nil, nil
		}
		if host.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
			return nil, &types.InvalidState{}
		}
		allVMs := req.EvacuatePoweredOffVms != nil && *req.EvacuatePoweredOffVms
		var movable []*simulator.VirtualMachine
		for _, ref := range append([]types.ManagedObjectReference(nil), host.Vm...) {
			vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
			if ok && (allVMs || vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn) {
				movable = append(movable, vm)
			}
		}
		if len(movable) > 0 {
			var targets []*simulator.HostSystem
			if host.Parent != nil && host.Parent.Type == "ClusterComputeResource" {
				for _, other := range hosts() {
					if other.Self != host.Self && other.Parent != nil && *other.Parent == *host.Parent &&
						other.Runtime.ConnectionState == types.HostSystemConnectionStateConnected &&
						!other.Runtime.InMaintenanceMode {
						targets = append(targets, other)
					}
				}
			}
			if len(targets) == 0 {
				return nil, &types.InvalidState{}
			}
			for i, vm := range movable {
				moveVM(vm, host, targets[i%len(targets)])
			}
		}
		simulator.Map.Update(host, []types.PropertyChange{{Name: "runtime.inMaintenanceMode", Val: true}})
		h.ext.recordMaintenance(host, "enter")
		return nil, nil
	})
	return &methods.EnterMaintenanceMode_TaskBody{Res: &types.EnterMaintenanceMode_TaskResponse{Returnval: task.Run()}}
}

func (h *hostExt) ExitMaintenanceModeTask(ctx *simulator.Context, req *types.ExitMaintenanceMode_Task) soap.HasFault {
	host := h.hostSystem()
	task := simulator.CreateTask(host, "exitMaintenanceMode", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if !host.Runtime.InMaintenanceMode {
			return nil, nil
		}
		if host.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
			return nil, &types.InvalidState{}
		}
		simulator.Map.Update(host, []types.PropertyChange{{Name: "runtime.inMaintenanceMode", Val: false}})
		h.ext.recordMaintenance(host, "exit")
		return nil, nil
	})
	return &methods.ExitMaintenanceMode_TaskBody{Res: &types.ExitMaintenanceMode_TaskResponse{Returnval: task.Run()}}
}

// RebootHostTask: the task ends when the reboot has been initiated (as on ESXi); the host is then
// notResponding for -host-reboot-ms, comes back connected with a new bootTime, and any build staged
// by InstallHostPatchV2 becomes the running build.
func (h *hostExt) RebootHostTask(ctx *simulator.Context, req *types.RebootHost_Task) soap.HasFault {
	host := h.hostSystem()
	task := simulator.CreateTask(host, "rebootHost", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if host.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
			return nil, &types.InvalidState{}
		}
		if !host.Runtime.InMaintenanceMode && !req.Force {
			return nil, &types.InvalidState{}
		}
		h.setConnection(host, types.HostSystemConnectionStateNotResponding)
		go func() {
			time.Sleep(time.Duration(h.ext.opts.rebootMs) * time.Millisecond)
			h.ext.mu.Lock()
			staged, ok := h.ext.staged[host.Self.Value]
			delete(h.ext.staged, host.Self.Value)
			h.ext.mu.Unlock()
			simulator.Map.WithLock(host, func() {
				if ok {
					setProduct(host, staged[0], staged[1], true)
				}
				now := time.Now()
				simulator.Map.Update(host, []types.PropertyChange{
					{Name: "runtime.bootTime", Val: &now},
					{Name: "summary.runtime.bootTime", Val: &now},
				})
			})
			h.setConnection(host, types.HostSystemConnectionStateConnected)
		}()
		return nil, nil
	})
	return &methods.RebootHost_TaskBody{Res: &types.RebootHost_TaskResponse{Returnval: task.Run()}}
}

func (h *hostExt) setConnection(host *simulator.HostSystem, state types.HostSystemConnectionState) {
	simulator.Map.WithLock(host, func() {
		simulator.Map.Update(host, []types.PropertyChange{
			{Name: "runtime.connectionState", Val: state},
			{Name: "summary.runtime.connectionState", Val: state},
		})
	})
}

// ------------------------------------------------------------------------------------------
// HostPatchManager, one per host
// ------------------------------------------------------------------------------------------

type patchManager struct {
	mo.HostPatchManager
	ext  *extension
	host types.ManagedObjectReference
}

func (p *patchManager) hostSystem() *simulator.HostSystem {
	return simulator.Map.Get(p.host).(*simulator.HostSystem)
}

func (p *patchManager) result(h *simulator.HostSystem, staged bool) *types.HostPatchManagerResult {
	installed := h.Config.Product.Build == p.ext.patchBuild
	status := types.HostPatchManagerStatus{
		Id:              "ESXi-patch-sim-" + p.ext.patchBuild,
		Applicable:      !installed,
		Installed:       installed || staged,
		RestartRequired: !installed,
		VmOffRequired:   !installed,
	}
	if staged {
		status.InstallState = []string{"hostRestarted"}
	}
	return &types.HostPatchManagerResult{Version: "1.0", Status: []types.HostPatchManagerStatus{status}}
}

func (p *patchManager) ScanHostPatchV2Task(ctx *simulator.Context, req *types.ScanHostPatchV2_Task) soap.HasFault {
	h := p.hostSystem()
	task := simulator.CreateTask(h, "scanHostPatchV2", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		p.ext.mu.Lock()
		_, staged := p.ext.staged[h.Self.Value]
		p.ext.mu.Unlock()
		return p.result(h, staged), nil
	})
	return &methods.ScanHostPatchV2_TaskBody{Res: &types.ScanHostPatchV2_TaskResponse{Returnval: task.Run()}}
}

func (p *patchManager) StageHostPatchTask(ctx *simulator.Context, req *types.StageHostPatch_Task) soap.HasFault {
	h := p.hostSystem()
	task := simulator.CreateTask(h, "stageHostPatch", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return p.result(h, false), nil
	})
	return &methods.StageHostPatch_TaskBody{Res: &types.StageHostPatch_TaskResponse{Returnval: task.Run()}}
}

func (p *patchManager) InstallHostPatchV2Task(ctx *simulator.Context, req *types.InstallHostPatchV2_Task) soap.HasFault {
	h := p.hostSystem()
	task := simulator.CreateTask(h, "installHostPatchV2", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if !h.Runtime.InMaintenanceMode {
			return nil, &types.InvalidState{}
		}
		if h.Config.Product.Build == p.ext.patchBuild {
			return p.result(h, false), nil
		}
		p.ext.mu.Lock()
		p.ext.staged[h.Self.Value] = [2]string{p.ext.patchVersion, p.ext.patchBuild}
		p.ext.mu.Unlock()
		return p.result(h, true), nil
	})
	return &methods.InstallHostPatchV2_TaskBody{Res: &types.InstallHostPatchV2_TaskResponse{Returnval: task.Run()}}
}

// ------------------------------------------------------------------------------------------
// VirtualMachine methods served by the extension (rerouted)
// ------------------------------------------------------------------------------------------

type vmExt struct {
	mo.ExtensibleManagedObject
	vm types.ManagedObjectReference
}

func vmExtFor(vm types.ManagedObjectReference) {
	ref := types.ManagedObjectReference{Type: vmExtType, Value: vm.Value}
	if simulator.Map.Get(ref) == nil {
		e := &vmExt{vm: vm}
		e.Self = ref
		simulator.Map.Put(e)
	}
}

func (v *vmExt) RebootGuest(ctx *simulator.Context, req *types.RebootGuest) soap.HasFault {
	body := &methods.RebootGuestBody{}
	vm := simulator.Map.Get(v.vm).(*simulator.VirtualMachine)
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		body.Fault_ = simulator.Fault("", &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOn, ExistingState: vm.Runtime.PowerState})
		return body
	}
	if vm.Guest == nil || vm.Guest.ToolsRunningStatus != "guestToolsRunning" {
		body.Fault_ = simulator.Fault("", &types.ToolsUnavailable{})
		return body
	}
	now := time.Now()
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "summary.runtime.bootTime", Val: &now}})
	})
	body.Res = &types.RebootGuestResponse{}
	return body
}

func (v *vmExt) ConsolidateVMDisksTask(ctx *simulator.Context, req *types.ConsolidateVMDisks_Task) soap.HasFault {
	vm := simulator.Map.Get(v.vm).(*simulator.VirtualMachine)
	task := simulator.CreateTask(vm, "consolidateVMDisks", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		simulator.Map.WithLock(vm, func() {
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "runtime.consolidationNeeded", Val: false}})
		})
		return nil, nil
	})
	return &methods.ConsolidateVMDisks_TaskBody{Res: &types.ConsolidateVMDisks_TaskResponse{Returnval: task.Run()}}
}

// ------------------------------------------------------------------------------------------
// Fixes applied after vcsim answered
// ------------------------------------------------------------------------------------------

// fixTask points a task's entity at the VM for snapshot tasks (pyVmomi type-checks entity
// against ManagedEntity) and sets entityName to the entity's name instead of its moref value.
func fixTask(taskRef types.ManagedObjectReference, owner *types.ManagedObjectReference) {
	task, ok := simulator.Map.Get(taskRef).(*simulator.Task)
	if !ok || task.Info.Entity == nil {
		return
	}
	entity := *task.Info.Entity
	if entity.Type == "VirtualMachineSnapshot" && owner != nil {
		entity = *owner
	}
	name := entity.Value
	if e, ok := simulator.Map.Get(entity).(mo.Entity); ok {
		name = e.Entity().Name
	}
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.entity", Val: &entity},
		{Name: "info.entityName", Val: name},
	})
}

// fixSnapshotState records a snapshot taken without memory as poweredOff (vcsim stores the VM's
// current power state, so every snapshot of a running VM would look like a memory snapshot).
func fixSnapshotState(vm *simulator.VirtualMachine, snapshot types.ManagedObjectReference) {
	simulator.Map.WithLock(vm, func() {
		if vm.Snapshot == nil {
			return
		}
		var walk func([]types.VirtualMachineSnapshotTree) bool
		walk = func(tree []types.VirtualMachineSnapshotTree) bool {
			for i := range tree {
				if tree[i].Snapshot == snapshot {
					tree[i].State = types.VirtualMachinePowerStatePoweredOff
					return true
				}
				if walk(tree[i].ChildSnapshotList) {
					return true
				}
			}
			return false
		}
		walk(vm.Snapshot.RootSnapshotList)
	})
}

// revertPower applies the snapshot's power state on revert, as vSphere does (vcsim leaves it).
func revertPower(vm *simulator.VirtualMachine, snapshot types.ManagedObjectReference) {
	var state types.VirtualMachinePowerState
	simulator.Map.WithLock(vm, func() {
		if vm.Snapshot == nil {
			return
		}
		var walk func([]types.VirtualMachineSnapshotTree)
		walk = func(tree []types.VirtualMachineSnapshotTree) {
			for i := range tree {
				if tree[i].Snapshot == snapshot {
					state = tree[i].State
				}
				walk(tree[i].ChildSnapshotList)
			}
		}
		walk(vm.Snapshot.RootSnapshotList)
		if state == "" || state == vm.Runtime.PowerState {
			return
		}
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.powerState", Val: state},
			{Name: "summary.runtime.powerState", Val: state},
		})
	})
}

// dedupeCustomValues keeps only the last value per custom field key (vcsim appends on every SetField).
func dedupeCustomValues(ref types.ManagedObjectReference) {
	e, ok := simulator.Map.Get(ref).(mo.Entity)
	if !ok {
		return
	}
	simulator.Map.WithLock(e, func() {
		me := e.Entity()
		me.CustomValue = lastPerKey(me.CustomValue)
		me.Value = lastPerKey(me.Value)
	})
}

func lastPerKey(values []types.BaseCustomFieldValue) []types.BaseCustomFieldValue {
	last := map[int32]int{}
	for i, v := range values {
		last[v.GetCustomFieldValue().Key] = i
	}
	var out []types.BaseCustomFieldValue
	for i, v := range values {
		if last[v.GetCustomFieldValue().Key] == i {
			out = append(out, v)
		}
	}
	return out
}
