// Command ferretdb-local runs FerretDB 1.24 on its SQLite backend, embedded as a library,
// behind a small wire-protocol front that makes single-document writes atomic.
//
// Why a program of our own: a bare `go install` of FerretDB's command panics at start (its
// version file is not part of the module), so Inside Track embeds the
// github.com/FerretDB/FerretDB/ferretdb package instead.
//
// Why the front: FerretDB 1.24 applies an update by reading the document, changing it in Go
// and writing it back, with no lock between the two. Two concurrent updates of one document
// (for example two `$inc`s, or an outbox relay's `$pullAll` racing a state change) can
// therefore lose one of them; we measured 300+300 concurrent `$inc`s ending at 198 and 178.
// MongoDB never does that, and the services rely on atomic single-document writes. So the
// front forwards every command unchanged but lets only one write command at a time reach
// FerretDB (reads go straight through, concurrently). It listens on loopback only.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

const (
	opQuery      = 2004
	opCompressed = 2012
	opMsg        = 2013
	moreToCome   = 1 << 1
	maxMessage   = 48 * 1024 * 1024
)

// readCommands never change data, so they may run concurrently with anything.
var readCommands = map[string]bool{
	"find": true, "getmore": true, "aggregate": true, "count": true, "distinct": true,
	"listcollections": true, "listdatabases": true, "listindexes": true, "hello": true,
	"ismaster": true, "ping": true, "buildinfo": true, "serverstatus": true, "killcursors": true,
	"endsessions": true, "getparameter": true, "dbstats": true, "collstats": true,
	"connectionstatus": true, "whatsmyuri": true, "getlog": true, "hostinfo": true,
	"getcmdlineopts": true, "explain": true, "datasize": true, "listcommands": true,
	"saslstart": true, "saslcontinue": true, "logout": true, "getfreemonitoringstatus": true,
}

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data", "var/ferretdb", "directory for the SQLite databases")
	level := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	pprofAddr := flag.String("pprof", "", "serve Go's pprof profiles on this loopback address (off when empty)")
	flag.Parse()

	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }() // net/http/pprof registers on the default mux
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fatal(2, "bad -log-level %q: %v", *level, err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	dir, err := filepath.Abs(*dataDir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		fatal(2, "cannot use data directory %q: %v", *dataDir, err)
	}

	// FerretDB itself listens on a private Unix socket; clients reach it through the front.
	socket := filepath.Join(os.TempDir(), fmt.Sprintf("insidetrack-ferretdb-%d.sock", os.Getpid()))
	_ = os.Remove(socket)
	defer os.Remove(socket)

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: socket},
		Logger:    logger,
		Handler:   "sqlite",
		// WAL with synchronous=NORMAL (SQLite's advice for WAL): a commit survives a crash of
		// this process, kill -9 included; only a power cut or an OS crash may lose the last
		// few. FerretDB's default (FULL) fsyncs every commit, and it commits every updated
		// document on its own. A checkpoint every 20,000 WAL pages (80 MB) instead of 1,000:
		// checkpoints took a quarter of FerretDB's CPU under a stream of small updates
		// (measured with -pprof: bulk updates by _id went from 956/s to 1,471/s).
		SQLiteURL: "file:" + dir + "/?_pragma=synchronous(normal)&_pragma=wal_autocheckpoint(20000)",
	})
	if err != nil {
		fatal(1, "%v", err)
	}

	front, err := net.Listen("tcp", *listen)
	if err != nil {
		fatal(1, "listen %s: %v", *listen, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.Run(ctx); err != nil {
			logger.Error("ferretdb stopped", "error", err)
		}
	}()

	go func() {
		<-ctx.Done()
		front.Close()
	}()

	logger.Warn("ferretdb-local listening", "listen", *listen, "data", dir)
	var writes sync.Mutex
	for {
		client, err := front.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			logger.Error("accept failed", "error", err)
			continue
		}
		go serve(ctx, client, socket, &writes, logger)
	}
	stop()
	<-done
}

func fatal(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb-local: "+format+"\n", args...)
	os.Exit(code)
}

// serve relays one client connection to FerretDB, one request and its replies at a time.
func serve(ctx context.Context, client net.Conn, socket string, writes *sync.Mutex, logger *slog.Logger) {
	defer client.Close()

	var backend net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		backend, err = net.Dial("unix", socket)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		logger.Error("backend unavailable", "error", err)
		return
	}
	defer backend.Close()

	for {
		request, err := readMessage(client)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				logger.Debug("client read", "error", err)
			}
			return
		}
		write := isWrite(request)
		if write {
			writes.Lock()
		}
		replies, err := exchange(backend, request)
		if write {
			writes.Unlock()
		}
		if err != nil {
			logger.Debug("backend exchange", "error", err)
			return
		}
		for _, reply := range replies {
			if _, err := client.Write(reply); err != nil {
				return
			}
		}
	}
}

// exchange sends one request and reads every reply it gets (none for fire-and-forget).
func exchange(backend net.Conn, request []byte) ([][]byte, error) {
	if _, err := backend.Write(request); err != nil {
		return nil, err
	}
	if opCode(request) == opMsg && flags(request)&moreToCome != 0 {
		return nil, nil
	}
	var replies [][]byte
	for {
		reply, err := readMessage(backend)
		if err != nil {
			return nil, err
		}
		replies = append(replies, reply)
		if opCode(reply) != opMsg || flags(reply)&moreToCome == 0 {
			return replies, nil
		}
	}
}

func readMessage(r io.Reader) ([]byte, error) {
	var header [16]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	length := int(int32(binary.LittleEndian.Uint32(header[:4])))
	if length < 16 || length > maxMessage {
		return nil, fmt.Errorf("bad message length %d", length)
	}
	msg := make([]byte, length)
	copy(msg, header[:])
	if _, err := io.ReadFull(r, msg[16:]); err != nil {
		return nil, err
	}
	return msg, nil
}

func opCode(msg []byte) int32 { return int32(binary.LittleEndian.Uint32(msg[12:16])) }

func flags(msg []byte) uint32 {
	if len(msg) < 20 {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[16:20])
}

// isWrite says whether a request may change data: anything but a known read command.
func isWrite(msg []byte) bool {
	switch opCode(msg) {
	case opQuery:
		return false // legacy handshakes (isMaster/hello) only
	case opMsg:
		name, ok := commandName(msg)
		return !ok || !readCommands[strings.ToLower(name)]
	default:
		return true // compressed or unknown: be safe
	}
}

// commandName returns the first key of the OP_MSG body section (kind 0): the command.
func commandName(msg []byte) (string, bool) {
	pos := 20 // header (16) + flagBits (4)
	end := len(msg)
	if flags(msg)&1 != 0 { // checksumPresent
		end -= 4
	}
	for pos < end {
		kind := msg[pos]
		pos++
		if pos+4 > end {
			return "", false
		}
		size := int(int32(binary.LittleEndian.Uint32(msg[pos : pos+4])))
		if size < 5 || pos+size > end {
			return "", false
		}
		if kind == 0 {
			doc := msg[pos : pos+size]
			// int32 length, then the first element: type byte, then its name (a C string).
			if len(doc) < 6 || doc[4] == 0 {
				return "", false
			}
			nameEnd := 5
			for nameEnd < len(doc) && doc[nameEnd] != 0 {
				nameEnd++
			}
			return string(doc[5:nameEnd]), nameEnd < len(doc)
		}
		pos += size // a document sequence (kind 1): its size covers the whole section
	}
	return "", false
}
