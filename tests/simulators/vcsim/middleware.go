package main

// The HTTP middleware in front of vcsim's /sdk: SOAP call counters, fault injection, rerouting of
// methods that the extension serves, and fixes applied after vcsim answered. Also serves the
// /vcsim-control/ endpoints.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

var (
	reMethod   = regexp.MustCompile(`<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)`)
	reThis     = regexp.MustCompile(`<_this[^>]*\btype="([^"]+)"[^>]*>([^<]*)</_this>`)
	reTask     = regexp.MustCompile(`<returnval[^>]*\btype="Task"[^>]*>([^<]+)</returnval>`)
	reEntity   = regexp.MustCompile(`<entity[^>]*\btype="([^"]+)"[^>]*>([^<]*)</entity>`)
	reNoMemory = regexp.MustCompile(`<memory[^>]*>false</memory>`)
)

// call is one decoded SOAP request: method, _this, and the VM/host that owns _this (for snapshots
// and patch managers), used by fault targets and fixes.
type call struct {
	method string
	this   types.ManagedObjectReference
	owner  *types.ManagedObjectReference
	names  []string
}

func parseCall(body []byte) call {
	c := call{}
	if m := reMethod.FindSubmatch(body); m != nil {
		c.method = string(m[1])
	}
	if m := reThis.FindSubmatch(body); m != nil {
		c.this = types.ManagedObjectReference{Type: string(m[1]), Value: string(m[2])}
	}
	c.names = []string{c.this.Value}
	switch obj := simulator.Map.Get(c.this).(type) {
	case *simulator.VirtualMachineSnapshot:
		vm := obj.Vm
		c.owner = &vm
	case *patchManager:
		host := obj.host
		c.owner = &host
	}
	if e, ok := simulator.Map.Get(c.this).(mo.Entity); ok {
		c.names = append(c.names, e.Entity().Name)
	}
	if c.owner != nil {
		c.names = append(c.names, c.owner.Value)
		if e, ok := simulator.Map.Get(*c.owner).(mo.Entity); ok {
			c.names = append(c.names, e.Entity().Name)
		}
	}
	return c
}

// entity is what a task made for this call is about: the owner (VM, host) or _this itself.
func (c call) entity() types.ManagedObjectReference {
	if c.owner != nil {
		return *c.owner
	}
	return c.this
}

type stats struct {
	mu    sync.Mutex
	calls map[string]int
}

func newStats() *stats { return &stats{calls: map[string]int{}} }

func (s *stats) add(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
}

type middleware struct {
	next   http.Handler
	ext    *extension
	faults *faultBook
	stats  *stats
	pager  *pager
	hook   *hookBook
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/vcsim-control/") {
		m.control(w, r)
		return
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
		m.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	c := parseCall(body)
	m.stats.add(c.method)
	if rule := m.faults.match(c); rule != nil && m.inject(w, r, body, c, rule) {
		return
	}
	if !m.ext.opts.raw && (c.method == "ContinueRetrievePropertiesEx" || c.method == "CancelRetrievePropertiesEx") {
		m.pager.serve(w, c.method, body)
		return
	}
	m.forward(w, r, body, c)
}

// serve runs vcsim's handler into a recorder; a panic (vcsim's Fetch of an unset property) is
// returned instead of dropping the connection.
func (m *middleware) serve(r *http.Request, body []byte) (rec *httptest.ResponseRecorder, failure any) {
	rec = httptest.NewRecorder()
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	defer func() { failure = recover() }()
	m.next.ServeHTTP(rec, req)
	return rec, nil
}

func (m *middleware) forward(w http.ResponseWriter, r *http.Request, body []byte, c call) {
	raw := m.ext.opts.raw
	if target, ok := rerouted[c.this.Type+"."+c.method]; ok && !raw {
		if target == vmExtType {
			vmExtFor(c.this)
		}
		ext := fmt.Sprintf(`<_this type="%s">%s</_this>`, target, c.this.Value)
		loc := reThis.FindIndex(body)
		body = append(append(append([]byte{}, body[:loc[0]]...), ext...), body[loc[1]:]...)
	}
	rec, failure := m.serve(r, body)
	if failure != nil {
		if raw {
			panic(failure)
		}
		if c.method == "Fetch" { // an unset property: answer "unset" (pyVmomi returns None)
			writeEnvelope(w, http.StatusOK, `<FetchResponse xmlns="urn:vim25"></FetchResponse>`)
			return
		}
		log.Printf("vcsim panic in %s: %v", c.method, failure)
		writeFault(w, &types.SystemError{Reason: fmt.Sprint(failure)}, fmt.Sprintf("vcsim panic: %v", failure))
		return
	}
	res := rec.Body.Bytes()
	if !raw && rec.Code == http.StatusOK {
		m.after(c, body, res)
		if c.method == "RetrievePropertiesEx" {
			res = m.pager.page(body, res)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(res)
}

// after applies the fixes that need vcsim's answer.
func (m *middleware) after(c call, req, res []byte) {
	var taskRef *types.ManagedObjectReference
	if mt := reTask.FindSubmatch(res); mt != nil {
		ref := types.ManagedObjectReference{Type: "Task", Value: string(mt[1])}
		taskRef = &ref
		fixTask(ref, c.owner)
	}
	var vm *simulator.VirtualMachine
	if c.this.Type == "VirtualMachine" {
		vm, _ = simulator.Map.Get(c.this).(*simulator.VirtualMachine)
	} else if c.owner != nil && c.owner.Type == "VirtualMachine" {
		vm, _ = simulator.Map.Get(*c.owner).(*simulator.VirtualMachine)
	}
	switch c.method {
	case "CreateSnapshot_Task":
		if vm != nil && taskRef != nil {
			if t, ok := simulator.Map.Get(*taskRef).(*simulator.Task); ok {
				if snap, ok := t.Info.Result.(types.ManagedObjectReference); ok {
					if reNoMemory.Match(req) {
						fixSnapshotState(vm, snap)
					}
					m.hook.fire("snapshot_created", vm, snap.Value, taskRef)
				}
			}
		}
	case "RevertToSnapshot_Task":
		if vm != nil {
			revertPower(vm, c.this)
			m.hook.fire("snapshot_reverted", vm, c.this.Value, taskRef)
		}
	case "SetField":
		if me := reEntity.FindSubmatch(req); me != nil {
			dedupeCustomValues(types.ManagedObjectReference{Type: string(me[1]), Value: string(me[2])})
		}
	case "SetCustomValue":
		dedupeCustomValues(c.this)
	}
	if vm != nil {
		syncGuest(vm)
	}
}

// ------------------------------------------------------------------------------------------
// Fault injection
// ------------------------------------------------------------------------------------------

func (m *middleware) inject(w http.ResponseWriter, r *http.Request, body []byte, c call, rule *faultRule) bool {
	switch rule.Mode {
	case "http":
		w.WriteHeader(rule.Status)
		return true
	case "drop":
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	case "soap":
		sleepMs(rule.Delay)
		writeFault(w, rule.fault(c.entity(), types.ManagedObjectReference{Type: "Task", Value: "task-injected"}), rule.message())
		return true
	case "task":
		task := newTask(c)
		fault := rule.fault(c.entity(), task.Self)
		if rule.Delay > 0 {
			go func() { sleepMs(rule.Delay); finishTask(task, nil, fault, rule.message()) }()
		} else {
			finishTask(task, nil, fault, rule.message())
		}
		writeTaskResponse(w, c.method, task.Self)
		return true
	case "slow":
		if !strings.HasSuffix(c.method, "_Task") {
			sleepMs(rule.Delay)
			return false
		}
		task := newTask(c)
		replay := r.Clone(r.Context())
		go func() {
			sleepMs(rule.Delay)
			rec := httptest.NewRecorder()
			m.forward(rec, replay, body, c)
			inner, ok := (*simulator.Task)(nil), false
			if mt := reTask.FindSubmatch(rec.Body.Bytes()); mt != nil {
				inner, ok = simulator.Map.Get(types.ManagedObjectReference{Type: "Task", Value: string(mt[1])}).(*simulator.Task)
			}
			if !ok {
				finishTask(task, nil, &types.SystemError{Reason: "slow call failed"}, rec.Body.String())
				return
			}
			for inner.Info.State == types.TaskInfoStateQueued || inner.Info.State == types.TaskInfoStateRunning {
				time.Sleep(50 * time.Millisecond)
			}
			if inner.Info.Error != nil {
				finishTask(task, nil, inner.Info.Error.Fault, inner.Info.Error.LocalizedMessage)
			} else {
				finishTask(task, inner.Info.Result, nil, "")
			}
		}()
		writeTaskResponse(w, c.method, task.Self)
		return true
	}
	return false
}

func sleepMs(ms int) {
	if ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
}

func newTask(c call) *simulator.Task {
	name := strings.TrimSuffix(c.method, "_Task")
	name = strings.ToLower(name[:1]) + name[1:]
	task := simulator.CreateTask(c.entity(), name, nil)
	fixTask(task.Self, c.owner)
	now := time.Now()
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.startTime", Val: now},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
	})
	return task
}

func finishTask(task *simulator.Task, result types.AnyType, fault types.BaseMethodFault, msg string) {
	state := types.TaskInfoStateSuccess
	var lmf interface{}
	if fault != nil {
		state = types.TaskInfoStateError
		lmf = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
	}
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.completeTime", Val: time.Now()},
		{Name: "info.state", Val: state},
		{Name: "info.result", Val: result},
		{Name: "info.error", Val: lmf},
	})
}

const envelopeStart = xml.Header + `<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" ` +
	`xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" ` +
	`xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`
const envelopeEnd = `</soapenv:Body></soapenv:Envelope>`

func writeEnvelope(w http.ResponseWriter, status int, inner string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, envelopeStart+inner+envelopeEnd)
}

func writeTaskResponse(w http.ResponseWriter, method string, task types.ManagedObjectReference) {
	writeEnvelope(w, http.StatusOK, fmt.Sprintf(
		`<%sResponse xmlns="urn:vim25"><returnval type="Task">%s</returnval></%sResponse>`, method, task.Value, method))
}

func writeFault(w http.ResponseWriter, fault types.BaseMethodFault, msg string) {
	var buf bytes.Buffer
	buf.WriteString(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>`)
	_ = xml.EscapeText(&buf, []byte(msg))
	buf.WriteString(`</faultstring><detail>`)
	kind := fmt.Sprintf("%T", fault)
	kind = kind[strings.LastIndex(kind, ".")+1:]
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Local: kind + "Fault"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "xmlns"}, Value: "urn:vim25"},
		{Name: xml.Name{Local: "xsi:type"}, Value: kind},
	}}
	if err := enc.EncodeElement(fault, start); err != nil {
		log.Printf("encoding fault %s: %v", kind, err)
	}
	_ = enc.Flush()
	buf.WriteString(`</detail></soapenv:Fault>`)
	writeEnvelope(w, http.StatusInternalServerError, buf.String())
}

// ------------------------------------------------------------------------------------------
// /vcsim-control/
// ------------------------------------------------------------------------------------------

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (m *middleware) control(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/vcsim-control/") {
	case "faults":
		m.controlFaults(w, r)
	case "hook":
		m.controlHook(w, r)
	case "stats":
		m.stats.mu.Lock()
		defer m.stats.mu.Unlock()
		if r.Method == http.MethodDelete {
			m.stats.calls = map[string]int{}
		}
		total := 0
		for _, n := range m.stats.calls {
			total += n
		}
		writeJSON(w, map[string]any{"calls": m.stats.calls, "total": total})
	case "maintenance":
		m.ext.mu.Lock()
		if r.Method == http.MethodDelete {
			m.ext.mmEvents, m.ext.maxConcurrent = nil, map[string]int{}
		}
		events := append([]maintenanceEvent{}, m.ext.mmEvents...)
		maxc := map[string]int{}
		for k, v := range m.ext.maxConcurrent {
			maxc[k] = v
		}
		m.ext.mu.Unlock()
		inMM := []string{}
		for _, h := range hosts() {
			if h.Runtime.InMaintenanceMode {
				inMM = append(inMM, h.Name)
			}
		}
		writeJSON(w, map[string]any{"events": events, "max_concurrent": maxc, "in_maintenance": inMM})
	case "hosts":
		out := []map[string]any{}
		for _, h := range hosts() {
			out = append(out, map[string]any{"name": h.Name, "moref": h.Self.Value, "cluster": hostCluster(h),
				"build": h.Config.Product.Build, "version": h.Config.Product.Version,
				"connection": h.Runtime.ConnectionState, "maintenance": h.Runtime.InMaintenanceMode, "vms": len(h.Vm)})
		}
		writeJSON(w, out)
	case "host-build":
		q := r.URL.Query()
		for _, h := range hosts() {
			if h.Name == q.Get("host") || h.Self.Value == q.Get("host") {
				simulator.Map.WithLock(h, func() { setProduct(h, q.Get("version"), q.Get("build"), true) })
				writeJSON(w, map[string]string{"host": h.Name, "build": q.Get("build")})
				return
			}
		}
		http.Error(w, "no such host", http.StatusNotFound)
	default:
		http.NotFound(w, r)
	}
}

func (m *middleware) controlFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodDelete:
		m.faults.clear()
	case http.MethodPost:
		data, _ := io.ReadAll(r.Body)
		rules, err := parseRules(data)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rule := range rules {
			m.faults.add(rule)
		}
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	writeJSON(w, m.faults.list())
}
