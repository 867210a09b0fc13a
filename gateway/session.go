package gateway

import "github.com/lxzan/gws"

// A link is its own gws session storage (ServerOption.NewSession makes an
// empty link, serveWS fills it in): handlers find their link with a type
// assertion, and no session map is kept per link. Values stored under
// other keys, if any code ever does, go to a map made on demand.
var _ gws.SessionStorage = (*link)(nil)

func (l *link) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.session)
}

func (l *link) Load(key string) (any, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.session[key]
	return v, ok
}

func (l *link) Delete(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.session, key)
}

func (l *link) Store(key string, value any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.session == nil {
		l.session = map[string]any{}
	}
	l.session[key] = value
}

func (l *link) Range(f func(key string, value any) bool) {
	l.mu.Lock()
	items := make(map[string]any, len(l.session))
	for k, v := range l.session {
		items[k] = v
	}
	l.mu.Unlock()
	for k, v := range items {
		if !f(k, v) {
			return
		}
	}
}
