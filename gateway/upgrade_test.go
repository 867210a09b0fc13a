package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
)

func upgradeRequest(host, extra string) string {
	return "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// TestUpgradeRequests: the accept loop serves upgrades to /ws itself and
// hands every other request to net/http; each malformed or refused
// upgrade gets the status net/http's path gave it.
func TestUpgradeRequests(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{AllowedOrigins: []string{"https://chat.example"}}})
	host := srv.Addr
	rows := []struct {
		name string
		// writes are sent one after the other (a split request).
		writes []string
		// statuses, one per request on the connection.
		statuses []int
	}{
		{"upgrade", []string{upgradeRequest(host, "")}, []int{101}},
		{"upgrade, allowed origin", []string{upgradeRequest(host, "Origin: https://chat.example\r\n")}, []int{101}},
		{"upgrade with a query", []string{strings.Replace(upgradeRequest(host, ""), "/ws ", "/ws?v=1 ", 1)}, []int{101}},
		{"upgrade split in bytes", strings.Split(upgradeRequest(host, ""), ""), []int{101}},
		{"origin refused", []string{upgradeRequest(host, "Origin: https://evil.example\r\n")}, []int{403}},
		{"no host", []string{strings.Replace(upgradeRequest(host, ""), "Host: "+host+"\r\n", "", 1)}, []int{400}},
		{"two hosts", []string{upgradeRequest(host, "Host: other\r\n")}, []int{400}},
		{"no upgrade headers", []string{"GET /ws HTTP/1.1\r\nHost: " + host + "\r\n\r\n"}, []int{400}},
		{"no key", []string{strings.Replace(upgradeRequest(host, ""), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1)}, []int{400}},
		{"malformed header", []string{"GET /ws HTTP/1.1\r\nHost: " + host + "\r\nno colon here\r\n\r\n"}, []int{400}},
		{"data before the answer", []string{upgradeRequest(host, "") + "\x81\x00"}, []int{400}},
		{"post", []string{"POST /ws HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 0\r\n\r\n"}, []int{400}},
		{"other path", []string{"GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n"}, []int{200}},
		{"other path, then an upgrade on the same connection (net/http)",
			[]string{"GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n", upgradeRequest(host, "")}, []int{200, 101}},
		{"refused origin through net/http",
			[]string{"GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n", upgradeRequest(host, "Origin: https://evil.example\r\n")}, []int{200, 403}},
		{"request line longer than the head reader", []string{"GET /healthz?" + strings.Repeat("a", 6000) + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"}, []int{200}},
		{"not found", []string{"GET /wsx HTTP/1.1\r\nHost: " + host + "\r\n\r\n"}, []int{404}},
		{"head too large", []string{"GET /ws HTTP/1.1\r\nHost: " + host + "\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 1100) + "\r\n"}, []int{431}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			next := 0
			for i, w := range row.writes {
				if _, err := io.WriteString(c, w); err != nil && row.statuses[len(row.statuses)-1] != 431 {
					t.Fatal(err)
				}
				// A write that ends a request: read its answer.
				if i == len(row.writes)-1 || strings.HasSuffix(w, "\r\n\r\n") && len(row.writes[i+1]) > 1 {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("request %d: %v", next, err)
					}
					if resp.StatusCode != http.StatusSwitchingProtocols {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					if resp.StatusCode != row.statuses[next] {
						t.Fatalf("request %d: status %d, want %d", next, resp.StatusCode, row.statuses[next])
					}
					next++
				}
			}
			if next != len(row.statuses) {
				t.Fatalf("%d answers, want %d", next, len(row.statuses))
			}
		})
	}
}

// TestUpgradeThenFrames: a link upgraded by the accept loop speaks the
// protocol (hello answered), the reader having gone back to its pool.
func TestUpgradeThenFrames(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	for i := range 20 {
		r := dialRaw(t, srv.URL)
		r.send(t, fmt.Sprintf(`{"id":"h%d","hello":{"versions":[1]}}`, i))
		if f := r.next(t); f.GetHelloOk() == nil {
			t.Fatalf("hello: %v", f)
		}
	}
}
