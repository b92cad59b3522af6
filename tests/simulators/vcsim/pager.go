package main

// Paging for RetrievePropertiesEx: vcsim 0.24 ignores options.maxObjects and does not implement
// ContinueRetrievePropertiesEx, so a client's token loop is never exercised. The pager cuts vcsim's
// answer into pages of maxObjects <objects> elements (verbatim XML) and serves the rest through
// ContinueRetrievePropertiesEx / CancelRetrievePropertiesEx, as vCenter does.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

var (
	reMaxObjects = regexp.MustCompile(`<maxObjects[^>]*>(\d+)</maxObjects>`)
	reToken      = regexp.MustCompile(`<token[^>]*>([^<]+)</token>`)
)

type pager struct {
	mu    sync.Mutex
	next  int
	pages map[string]*pending
}

type pending struct {
	objects [][]byte
	size    int
}

func newPager() *pager { return &pager{pages: map[string]*pending{}} }

// objectsOf returns the top-level <objects> elements of a RetrievePropertiesEx response, verbatim.
func objectsOf(res []byte) ([][]byte, error) {
	dec := xml.NewDecoder(bytes.NewReader(res))
	var out [][]byte
	depth, start := 0, int64(-1)
	for {
		before := dec.InputOffset()
		tok, err := dec.RawToken()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if t.Name.Local == "objects" && start < 0 {
				start = before
			}
		case xml.EndElement:
			depth--
			if t.Name.Local == "objects" && start >= 0 {
				out = append(out, res[start:dec.InputOffset()])
				start = -1
			}
		}
	}
}

// page rewrites vcsim's single-page answer when it holds more than maxObjects objects.
func (p *pager) page(req, res []byte) []byte {
	m := reMaxObjects.FindSubmatch(req)
	if m == nil {
		return res
	}
	size, _ := strconv.Atoi(string(m[1]))
	if size <= 0 {
		return res
	}
	objects, err := objectsOf(res)
	if err != nil || len(objects) <= size {
		return res
	}
	p.mu.Lock()
	p.next++
	token := fmt.Sprintf("pw-page-%d", p.next)
	p.pages[token] = &pending{objects: objects[size:], size: size}
	p.mu.Unlock()
	return []byte(envelopeStart + result("RetrievePropertiesExResponse", objects[:size], token) + envelopeEnd)
}

func result(element string, objects [][]byte, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<%s xmlns="urn:vim25"><returnval>`, element)
	if token != "" {
		fmt.Fprintf(&b, `<token>%s</token>`, token)
	}
	for _, o := range objects {
		b.Write(o)
	}
	fmt.Fprintf(&b, `</returnval></%s>`, element)
	return b.String()
}

// serve answers ContinueRetrievePropertiesEx and CancelRetrievePropertiesEx.
func (p *pager) serve(w http.ResponseWriter, method string, body []byte) {
	m := reToken.FindSubmatch(body)
	token := ""
	if m != nil {
		token = string(m[1])
	}
	p.mu.Lock()
	pend, ok := p.pages[token]
	if method == "CancelRetrievePropertiesEx" {
		delete(p.pages, token)
		p.mu.Unlock()
		writeEnvelope(w, http.StatusOK, `<CancelRetrievePropertiesExResponse xmlns="urn:vim25"></CancelRetrievePropertiesExResponse>`)
		return
	}
	if !ok {
		p.mu.Unlock()
		writeFault(w, invalidToken(), "unknown or finished token "+token)
		return
	}
	n := pend.size
	if n > len(pend.objects) {
		n = len(pend.objects)
	}
	objects := pend.objects[:n]
	pend.objects = pend.objects[n:]
	next := ""
	if len(pend.objects) > 0 {
		next = token
	} else {
		delete(p.pages, token)
	}
	p.mu.Unlock()
	writeEnvelope(w, http.StatusOK, result("ContinueRetrievePropertiesExResponse", objects, next))
}

func invalidToken() types.BaseMethodFault {
	return &types.InvalidArgument{InvalidProperty: "token"}
}
