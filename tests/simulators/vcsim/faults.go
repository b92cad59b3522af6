package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/types"
)

// faultRule: method=M[,target=T][,fault=F][,mode=M][,count=N][,skip=N][,delay=ms][,status=N][,msg=S]
type faultRule struct {
	ID     int    `json:"id"`
	Method string `json:"method"`
	Target string `json:"target,omitempty"`
	Fault  string `json:"fault,omitempty"`
	Mode   string `json:"mode,omitempty"` // task | soap | http | drop | slow
	Count  int    `json:"count,omitempty"`
	Skip   int    `json:"skip,omitempty"`
	Delay  int    `json:"delay,omitempty"`
	Status int    `json:"status,omitempty"`
	Msg    string `json:"msg,omitempty"`
	Seen   int    `json:"seen"`  // matching calls seen
	Fired  int    `json:"fired"` // calls the rule acted on
}

func (r *faultRule) normalise() error {
	if r.Method == "" {
		return fmt.Errorf("rule needs method=")
	}
	if r.Mode == "" {
		switch {
		case r.Fault != "" && strings.HasSuffix(r.Method, "_Task"):
			r.Mode = "task"
		case r.Fault != "":
			r.Mode = "soap"
		case r.Status != 0:
			r.Mode = "http"
		case r.Delay > 0:
			r.Mode = "slow"
		default:
			return fmt.Errorf("rule for %s needs fault=, status=, delay= or mode=", r.Method)
		}
	}
	switch r.Mode {
	case "task", "soap":
		if _, ok := faultType(r.Fault); !ok {
			return fmt.Errorf("unknown fault type %q", r.Fault)
		}
		if r.Mode == "task" && !strings.HasSuffix(r.Method, "_Task") {
			return fmt.Errorf("mode=task needs a *_Task method, got %s", r.Method)
		}
	case "http":
		if r.Status == 0 {
			r.Status = 503
		}
	case "drop", "slow":
	default:
		return fmt.Errorf("unknown mode %q", r.Mode)
	}
	return nil
}

func faultType(name string) (reflect.Type, bool) {
	t, ok := types.TypeFunc()(name)
	if !ok {
		return nil, false
	}
	_, isFault := reflect.New(t).Interface().(types.BaseMethodFault)
	return t, isFault
}

func (r *faultRule) message() string {
	if r.Msg != "" {
		return r.Msg
	}
	return "injected " + r.Fault
}

// fault builds the fault object; zero moref fields are filled (pyVmomi cannot deserialise empty
// ones): a field named Task gets the task, any other the call's entity.
func (r *faultRule) fault(entity, task types.ManagedObjectReference) types.BaseMethodFault {
	t, _ := faultType(r.Fault)
	v := reflect.New(t)
	fillRefs(v.Elem(), entity, task)
	return v.Interface().(types.BaseMethodFault)
}

var morType = reflect.TypeOf(types.ManagedObjectReference{})

func fillRefs(v reflect.Value, entity, task types.ManagedObjectReference) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !f.CanSet() {
			continue
		}
		switch {
		case f.Type() == morType:
			if f.Interface().(types.ManagedObjectReference).Value == "" {
				if v.Type().Field(i).Name == "Task" {
					f.Set(reflect.ValueOf(task))
				} else {
					f.Set(reflect.ValueOf(entity))
				}
			}
		case f.Kind() == reflect.Struct:
			fillRefs(f, entity, task)
		}
	}
}

func parseRule(s string) (*faultRule, error) {
	r := &faultRule{}
	rest := strings.TrimSpace(s)
	for rest != "" {
		var part string
		if strings.HasPrefix(rest, "msg=") {
			part, rest = rest, "" // msg takes the rest of the rule, commas included
		} else {
			part, rest, _ = strings.Cut(rest, ",")
		}
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("bad rule part %q", part)
		}
		var err error
		switch key {
		case "method":
			r.Method = val
		case "target":
			r.Target = val
		case "fault":
			r.Fault = val
		case "mode":
			r.Mode = val
		case "msg":
			r.Msg = val
		case "count":
			r.Count, err = strconv.Atoi(val)
		case "skip":
			r.Skip, err = strconv.Atoi(val)
		case "delay":
			r.Delay, err = strconv.Atoi(val)
		case "status":
			r.Status, err = strconv.Atoi(val)
		default:
			return nil, fmt.Errorf("unknown rule key %q", key)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", key, err)
		}
	}
	return r, r.normalise()
}

// parseRules accepts a JSON object, a JSON list of objects, or rule strings (one per line).
func parseRules(data []byte) ([]*faultRule, error) {
	data = bytes.TrimSpace(data)
	var rules []*faultRule
	switch {
	case bytes.HasPrefix(data, []byte("[")):
		if err := json.Unmarshal(data, &rules); err != nil {
			return nil, err
		}
	case bytes.HasPrefix(data, []byte("{")):
		r := &faultRule{}
		if err := json.Unmarshal(data, r); err != nil {
			return nil, err
		}
		rules = append(rules, r)
	default:
		for _, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			r, err := parseRule(line)
			if err != nil {
				return nil, err
			}
			rules = append(rules, r)
		}
		return rules, nil
	}
	for _, r := range rules {
		if err := r.normalise(); err != nil {
			return nil, err
		}
	}
	return rules, nil
}

type faultBook struct {
	mu     sync.Mutex
	rules  []*faultRule
	nextID int
}

func newFaultBook(specs []string) (*faultBook, error) {
	b := &faultBook{}
	for _, s := range specs {
		r, err := parseRule(s)
		if err != nil {
			return nil, err
		}
		b.add(r)
	}
	return b, nil
}

func (b *faultBook) add(r *faultRule) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	r.ID, r.Seen, r.Fired = b.nextID, 0, 0
	b.rules = append(b.rules, r)
}

func (b *faultBook) clear() {
	b.mu.Lock()
	b.rules = nil
	b.mu.Unlock()
}

func (b *faultBook) list() []faultRule {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []faultRule{}
	for _, r := range b.rules {
		out = append(out, *r)
	}
	return out
}

// match returns the first rule that acts on this call (a copy), counting seen/fired.
func (b *faultBook) match(c call) *faultRule {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.rules {
		if r.Method != "*" && r.Method != c.method {
			continue
		}
		if r.Target != "" && !contains(c.names, r.Target) {
			continue
		}
		r.Seen++
		if r.Seen <= r.Skip || (r.Count > 0 && r.Fired >= r.Count) {
			continue
		}
		r.Fired++
		copied := *r
		return &copied
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
