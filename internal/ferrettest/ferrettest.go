// Package ferrettest runs FerretDB (SQLite backend) in-process for tests of the MongoDB store.
//
// Clients do not talk to FerretDB directly but through a small TCP relay owned by the Server:
// FerretDB keeps serving already open connections for up to 3 seconds after it is told to stop,
// so Stop closes the relay's listener and cuts every relayed connection first, which makes an
// outage immediate and deterministic (clients get connection errors at once), and then shuts
// FerretDB down. Start brings FerretDB back on the same data directory and the relay back on the
// same port, so clients holding the old URI reconnect and see the old data.
package ferrettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Server is one FerretDB instance with its data directory and stable client address.
type Server struct {
	dir  string // SQLite data directory
	addr string // 127.0.0.1:PORT clients use

	life sync.Mutex // serializes Start and Stop

	mu      sync.Mutex // guards the fields below
	running bool
	ln      net.Listener          // relay listener (clients)
	cancel  context.CancelFunc    // stops FerretDB
	done    chan struct{}         // closed when FerretDB's Run returned
	conns   map[net.Conn]struct{} // open relayed connections, both sides
	relayWG sync.WaitGroup
}

// newMu serializes ferretdb.New: it writes package-level state (version info).
var newMu sync.Mutex

// Start starts a FerretDB with its own data directory (under t.TempDir) and stops it when the
// test ends. Starting one takes a few milliseconds, so every test that needs a database can
// have its own server; there is no shared instance. Set FERRETTEST_LOG=1 to see FerretDB's
// debug log on stderr.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := newServer(t.TempDir())
	if err != nil {
		t.Fatalf("ferrettest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func newServer(dir string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	if err := s.start(ln); err != nil {
		ln.Close()
		return nil, err
	}
	return s, nil
}

// Addr is the host:port clients connect to; it stays the same across Stop and Start.
func (s *Server) Addr() string { return s.addr }

// Dir is the SQLite data directory.
func (s *Server) Dir() string { return s.dir }

// URI returns a MongoDB URI for database db with timeouts short enough for tests.
func (s *Server) URI(db string) string {
	q := url.Values{}
	q.Set("serverSelectionTimeoutMS", "1500")
	q.Set("connectTimeoutMS", "1000")
	q.Set("heartbeatFrequencyMS", "500")
	q.Set("directConnection", "true")
	u := url.URL{Scheme: "mongodb", Host: s.addr, Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// Start restarts a stopped server on the same port and data directory. It is a no-op when the
// server is running.
func (s *Server) Start() error {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		return nil
	}
	var ln net.Listener
	var err error
	// The port was ours a moment ago; retry briefly in case the OS has not released it yet.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("ferrettest: relisten on %s: %w", s.addr, err)
	}
	if err := s.start(ln); err != nil {
		ln.Close()
		return err
	}
	return nil
}

// start runs FerretDB on a private port and relays ln to it.
func (s *Server) start(ln net.Listener) error {
	newMu.Lock()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:   logger(),
		Handler:  "sqlite",
		// FerretDB wants a directory URI with a trailing slash. No fsync: test data only has
		// to survive Stop/Start within the process, and fsync on a busy CI disk made single
		// commands take seconds.
		SQLiteURL: "file:" + filepath.ToSlash(s.dir) + "/?_pragma=synchronous(OFF)",
	})
	newMu.Unlock()
	if err != nil {
		return fmt.Errorf("ferrettest: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	u, err := url.Parse(f.MongoDBURI()) // blocks until FerretDB's listener is up
	if err != nil {
		cancel()
		<-done
		return fmt.Errorf("ferrettest: %w", err)
	}
	if err := waitAccept(u.Host, 10*time.Second); err != nil {
		cancel()
		<-done
		return err
	}

	s.mu.Lock()
	s.running = true
	s.ln = ln
	s.cancel = cancel
	s.done = done
	s.mu.Unlock()

	s.relayWG.Add(1)
	go s.acceptLoop(ln, u.Host)
	return nil
}

func waitAccept(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ferrettest: FerretDB does not accept connections on %s: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) acceptLoop(ln net.Listener, backend string) {
	defer s.relayWG.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		b, err := net.DialTimeout("tcp", backend, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !s.track(c, b) {
			c.Close()
			b.Close()
			continue
		}
		s.relayWG.Add(2)
		go s.pipe(b, c)
		go s.pipe(c, b)
	}
}

// track registers a relayed pair; false when the server is stopping.
func (s *Server) track(c, b net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return false
	}
	s.conns[c] = struct{}{}
	s.conns[b] = struct{}{}
	return true
}

func (s *Server) pipe(dst, src net.Conn) {
	defer s.relayWG.Done()
	_, _ = io.Copy(dst, src)
	// One direction ended: end both, so the other copy returns too.
	dst.Close()
	src.Close()
	s.mu.Lock()
	delete(s.conns, dst)
	delete(s.conns, src)
	s.mu.Unlock()
}

// Stop makes the server unreachable: the listener goes away, open connections are cut, and
// FerretDB shuts down (its data stays in the data directory). It is a no-op when stopped.
func (s *Server) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	s.running = false
	ln, cancel, done := s.ln, s.cancel, s.done
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	ln.Close()
	for _, c := range conns {
		c.Close()
	}
	s.relayWG.Wait()
	cancel()
	<-done
}

func logger() *slog.Logger {
	if os.Getenv("FERRETTEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
