package main

// Snapshot hooks: a test registers a URL (POST /vcsim-control/hook, body = the URL; DELETE clears)
// and the launcher POSTs a JSON event to it *before* answering the SOAP call of a snapshot task that
// finished successfully:
//
//	{"event": "snapshot_created" | "snapshot_reverted", "vm": NAME, "vm_moref": "vm-N", "snapshot": "snapshot-N"}
//
// vcsim VMs have no disks, so a test that keeps a guest's state elsewhere (patchwave_lab/fakeguest) uses the
// hook to capture that state at snapshot time and put it back on revert, as a disk snapshot would.
// The call is synchronous (10 s timeout): the client sees the task only after the hook answered.
// Only CreateSnapshot_Task and RevertToSnapshot_Task fire (what patchwave's adapter uses).

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type hookBook struct {
	mu  sync.Mutex
	url string
}

func (h *hookBook) get() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.url
}

func (h *hookBook) set(url string) {
	h.mu.Lock()
	h.url = url
	h.mu.Unlock()
}

// fire posts the event when a hook is registered and the task finished successfully.
func (h *hookBook) fire(event string, vm *simulator.VirtualMachine, snapshot string, task *types.ManagedObjectReference) {
	url := h.get()
	if url == "" || vm == nil || task == nil {
		return
	}
	if t, ok := simulator.Map.Get(*task).(*simulator.Task); !ok || t.Info.State != types.TaskInfoStateSuccess {
		return
	}
	body, _ := json.Marshal(map[string]string{"event": event, "vm": vm.Name, "vm_moref": vm.Self.Value, "snapshot": snapshot})
	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		log.Printf("snapshot hook %s for %s failed: %v", event, vm.Name, err)
		return
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if res.StatusCode >= 300 {
		log.Printf("snapshot hook %s for %s answered %d", event, vm.Name, res.StatusCode)
	}
}

func (m *middleware) controlHook(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodDelete:
		m.hook.set("")
	case http.MethodPost:
		data, _ := io.ReadAll(r.Body)
		m.hook.set(string(bytes.TrimSpace(data)))
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	writeJSON(w, map[string]string{"url": m.hook.get()})
}
