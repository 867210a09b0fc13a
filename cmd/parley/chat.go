package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// chatOptions configure runChat; chat fills them from flags.
type chatOptions struct {
	Addr           string        // server host:port; the client dials ws://Addr/ws
	User, Password string        // if both set: register if needed, then log in
	Device         string        // "" derives the device id from host name and user
	KeepAlive      time.Duration // ping period, under the server's idle timeout; default 20s
}

const chatHelp = `commands:
  /register USER PASS [DISPLAY]  create an account
  /login USER PASS               log in
  /whoami                        show your user id
  /groups                        list your conversations
  /create TITLE [USERID...]      create a group (one-word title) and open it
  /add CONV USERID...            add members to a group
  /dm USERID                     open the direct conversation with a user
  /open CONV                     switch conversation; shows its last 20 messages
  /history [N]                   show the last N messages (default 20)
  /send-file PATH                upload a file into the open conversation
  /get-file FILEID [PATH]        download a file (default: its name, here)
  /quit                          leave
Other lines go to the open conversation; start one with // to send a leading /.`

func chat(args []string) error {
	var o chatOptions
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "server address; connects to ws://ADDR/ws")
	fs.StringVar(&o.User, "user", "", "user to register if needed and log in as (with -password)")
	fs.StringVar(&o.Password, "password", "", "password of -user")
	fs.StringVar(&o.Device, "device", "", "device id, 1..64 of [A-Za-z0-9_-] (default: host name and user)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	} else if fs.NArg() > 0 {
		return fmt.Errorf("chat: unexpected arguments %q", fs.Args())
	}
	return runChat(context.Background(), o, os.Stdin, os.Stdout)
}

// chatError is a local error, printed like a server one.
type chatError struct{ code, msg string }

func (e *chatError) Error() string { return e.code + ": " + e.msg }

// chatSession is one run of the client. The command goroutine owns c and
// current; event printers share titles under mu.
type chatSession struct {
	url       string
	device    *pb.Device
	keepAlive time.Duration
	c         *client.Client
	current   string
	outMu     sync.Mutex // serializes writes to out
	out       io.Writer
	mu        sync.Mutex
	titles    map[string]string // conversation id → title
}

// runChat runs the client: each line of in is a command or a message, and
// everything shown goes to out. It returns nil on /quit or end of input;
// ctx bounds the commands and is checked between lines.
func runChat(ctx context.Context, o chatOptions, in io.Reader, out io.Writer) error {
	if (o.User == "") != (o.Password == "") {
		return errors.New("chat: -user and -password go together")
	}
	host, _ := os.Hostname()
	device := cmp.Or(o.Device, chatDeviceID(strings.Trim(host+"-"+o.User, "-")))
	s := &chatSession{url: "ws://" + o.Addr + "/ws", keepAlive: cmp.Or(o.KeepAlive, 20*time.Second), out: out,
		device: &pb.Device{Id: device, Type: pb.DeviceType_DEVICE_TYPE_DESKTOP},
		titles: map[string]string{}}
	defer func() {
		if s.c != nil {
			s.c.Close()
		}
	}()
	if _, err := s.link(ctx); err != nil {
		return err
	}
	if o.User == "" {
		s.printf("* connected to %s; /register USER PASS, then /login USER PASS (/help for more)", o.Addr)
	} else if _, err := s.c.Register(ctx, o.User, o.Password, ""); err != nil && client.Code(err) != pb.CodeUsernameTaken {
		return fmt.Errorf("chat: register %s: %w", o.User, err)
	} else if err := s.login(ctx, o.User, o.Password); err != nil {
		return fmt.Errorf("chat: login %s: %w", o.User, err)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.loggedIn() && chatClosed(s.c) {
			return fmt.Errorf("chat: connection closed: %v", s.c.Err())
		}
		if s.handle(ctx, strings.TrimSpace(sc.Text())) {
			return nil
		}
	}
	return sc.Err()
}

// handle runs one input line, printing any error, and reports whether the
// user quit.
func (s *chatSession) handle(ctx context.Context, line string) (quit bool) {
	cmd, rest, _ := strings.Cut(line, " ")
	if cmd == "/quit" || cmd == "/exit" {
		return true
	}
	err := s.run(ctx, line, cmd, strings.Fields(rest))
	if pe := (*client.Error)(nil); errors.As(err, &pe) {
		err = &chatError{pe.Code, pe.Message}
	}
	if err != nil {
		s.printf("error: %v", err)
	}
	return false
}

// run executes one line: cmd is its first word and args the others. A line
// that is not a command is posted to the open conversation (its echo comes
// back as an event).
func (s *chatSession) run(ctx context.Context, line, cmd string, args []string) error {
	n, isCmd := len(args), strings.HasPrefix(line, "/") && !strings.HasPrefix(line, "//")
	switch {
	case line == "":
		return nil
	case cmd == "/help":
		s.printf("%s", chatHelp)
		return nil
	case isCmd && !strings.Contains(chatHelp, "  "+cmd+" "):
		return &chatError{pb.CodeUnknownCommand, cmd + " (see /help)"}
	case !s.loggedIn() && cmd != "/register" && cmd != "/login":
		return &chatError{pb.CodeUnauthenticated, "not logged in; use /login USER PASS"}
	case (!isCmd || cmd == "/history" && n <= 1 || cmd == "/send-file") && s.current == "":
		return &chatError{"no_conversation", "no conversation open; use /open or /create"}
	case !isCmd:
		_, err := s.c.Send(ctx, s.current, strings.TrimPrefix(line, "/"))
		return err
	case cmd == "/register" && n >= 2:
		c, err := s.link(ctx)
		if err == nil {
			var id string
			if id, err = c.Register(ctx, args[0], args[1], strings.Join(args[2:], " ")); err == nil {
				s.printf("* registered %s (%s); now /login %s PASS", args[0], id, args[0])
			}
		}
		return err
	case cmd == "/login" && n == 2:
		return s.login(ctx, args[0], args[1])
	case cmd == "/whoami" && n == 0:
		s.printf("* user %s on device %s", s.c.UserID(), s.device.Id)
	case cmd == "/groups" && n == 0:
		return s.groups(ctx)
	case cmd == "/create" && n >= 1 || cmd == "/dm" && n == 1:
		var conv *pb.Conversation
		var err error
		if cmd == "/dm" {
			conv, err = s.c.OpenDirect(ctx, args[0])
		} else {
			conv, err = s.c.CreateGroup(ctx, args[0], args[1:]...)
		}
		if err != nil {
			return err
		}
		s.remember(conv)
		s.current = conv.Id
		s.printf("* now in %s (%s)", s.label(conv.Id), conv.Id)
	case cmd == "/add" && n >= 2:
		_, err := s.c.AddMembers(ctx, args[0], args[1:]...)
		if err == nil {
			s.printf("* added %s to %s", strings.Join(args[1:], ", "), s.label(args[0]))
		}
		return err
	case cmd == "/open" && n == 1:
		if err := s.showTail(ctx, args[0], 20, "* now in %s (%s)"); err != nil {
			return err
		}
		s.current = args[0]
	case cmd == "/send-file" && n >= 1:
		path := strings.TrimSpace(strings.TrimPrefix(line, "/send-file"))
		res, err := s.c.UploadFile(ctx, path, client.UploadOptions{Conversation: s.current, MIME: mimeOf(path)})
		if err == nil {
			s.printf("* sent %s as file %s (#%d)", chatClean(path), res.FileID, res.Seq)
		}
		return err
	case cmd == "/get-file" && (n == 1 || n == 2):
		path := ""
		if n == 2 {
			path = args[1]
		} else if info, err := s.c.FileInfo(ctx, args[0]); err != nil {
			return err
		} else {
			path = filepath.Base(info.Name)
		}
		info, err := s.c.DownloadFile(ctx, args[0], path, nil)
		if err == nil {
			s.printf("* saved %s (%d bytes, sha256 verified)", chatClean(path), info.Size)
		}
		return err
	case cmd == "/history" && n <= 1:
		limit := 20
		if n == 1 {
			limit, _ = strconv.Atoi(args[0])
		}
		if limit < 1 || limit > 500 {
			return &chatError{"usage", "/history [N] with N in 1..500"}
		}
		return s.showTail(ctx, s.current, limit, "* history of %s (%s)")
	default:
		return &chatError{"usage", "wrong arguments to " + cmd + "; see /help"}
	}
	return nil
}

// link returns the open connection, dialing anew when there is none or the
// last one closed before login (the server drops links that do not log in
// within its auth timeout). Each link gets its own event printer.
func (s *chatSession) link(ctx context.Context) (*client.Client, error) {
	if s.c != nil && !chatClosed(s.c) {
		return s.c, nil
	} else if s.loggedIn() {
		return nil, client.ErrClosed
	}
	c, err := client.Dial(ctx, client.Options{URL: s.url, Device: s.device})
	if err != nil {
		return nil, err
	}
	s.c = c
	go s.printEvents(c)
	var ping func() // keeps a quiet link inside the server's idle timeout
	ping = func() {
		if _, err := c.Start(&pb.ClientFrame{Command: &pb.ClientFrame_Ping{Ping: &pb.Ping{}}}); err == nil {
			time.AfterFunc(s.keepAlive, ping)
		}
	}
	time.AfterFunc(s.keepAlive, ping)
	return c, nil
}

// chatClosed reports whether c's connection has ended.
func chatClosed(c *client.Client) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// loggedIn reports whether the current link is authenticated.
func (s *chatSession) loggedIn() bool { return s.c != nil && s.c.UserID() != "" }

// login logs the link in; the SDK then streams each conversation's
// history, which the printer shows.
func (s *chatSession) login(ctx context.Context, user, pass string) error {
	c, err := s.link(ctx)
	if err != nil {
		return err
	}
	li, err := c.Login(ctx, user, pass)
	if err != nil {
		return err
	}
	convs := li.GetSession().GetConversations()
	for _, conv := range convs {
		s.remember(conv)
	}
	s.printf("* logged in as %s (%s) on device %s; %d conversations (/groups)", user, c.UserID(), s.device.Id, len(convs))
	return nil
}

// groups lists the user's conversations: id, kind and title.
func (s *chatSession) groups(ctx context.Context) error {
	f, err := s.c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ListConversations{ListConversations: &pb.ListConversations{}}})
	out := []string{"* your conversations:"}
	for _, conv := range f.GetConversationList().GetConversations() {
		s.remember(conv)
		kind := strings.ToLower(strings.TrimPrefix(conv.Kind.String(), "CONVERSATION_KIND_"))
		out = append(out, fmt.Sprintf("  %s  %-6s  %s", conv.Id, kind, chatClean(conv.Title)))
	}
	if err == nil {
		s.printf("%s", strings.Join(out, "\n"))
	}
	return err
}

// showTail prints a header (format of label and id) and the last n
// messages of conv in one write. History pages forward from a seq, so a
// first page learns the last seq.
func (s *chatSession) showTail(ctx context.Context, conv string, n int, header string) error {
	p, err := s.c.History(ctx, conv, 0, int32(n))
	if err == nil && p.GetLastSeq() > int64(n) {
		p, err = s.c.History(ctx, conv, p.GetLastSeq()-int64(n), int32(n))
	}
	out := []string{fmt.Sprintf(header, s.label(conv), conv)}
	for _, m := range p.GetMessages() {
		out = append(out, chatFormat(s.label(conv), m))
	}
	if err == nil {
		s.printf("%s", strings.Join(out, "\n"))
	}
	return err
}

// remember records a conversation's title.
func (s *chatSession) remember(conv *pb.Conversation) {
	s.mu.Lock()
	s.titles[conv.GetId()] = conv.GetTitle()
	s.mu.Unlock()
}

// label names a conversation by its title, else by a short id.
func (s *chatSession) label(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cmp.Or(chatClean(s.titles[id]), id[:min(len(id), 10)])
}

// printEvents prints c's event stream until it closes.
func (s *chatSession) printEvents(c *client.Client) {
	for ev := range c.Events() {
		if m := ev.Message; m != nil {
			if m.Kind == pb.MessageKind_MESSAGE_KIND_CREATED || m.Kind == pb.MessageKind_MESSAGE_KIND_RENAMED {
				s.remember(&pb.Conversation{Id: m.ConversationId, Title: m.Text})
			}
			s.printf("%s", chatFormat(s.label(m.ConversationId), m))
		} else if j := ev.Session.GetConversationJoined(); j != nil {
			s.remember(j.Conversation)
			s.printf("* joined %s (%s)", s.label(j.Conversation.GetId()), j.Conversation.GetId())
		} else if l := ev.Session.GetConversationLeft(); l != nil {
			s.printf("* left %s (%s)", s.label(l.ConversationId), l.ConversationId)
		}
	}
}

// chatFormat renders one conversation message. System kinds start with
// "*" and show the kind, the users or target, and the text.
func chatFormat(label string, m *pb.Message) string {
	head := fmt.Sprintf("[%s #%d]", label, m.Seq)
	switch m.Kind {
	case pb.MessageKind_MESSAGE_KIND_TEXT:
		return fmt.Sprintf("%s %s: %s", head, m.Sender, chatClean(m.Text))
	case pb.MessageKind_MESSAGE_KIND_DELETED:
		return head + " (deleted)"
	case pb.MessageKind_MESSAGE_KIND_FILE:
		f := m.File
		return fmt.Sprintf("%s %s: [file] %s (%s, %d bytes) /get-file %s", head, m.Sender, chatClean(f.GetName()), chatClean(f.GetMime()), f.GetSize(), f.GetFileId())
	}
	about := strings.Join(m.Users, ",")
	if m.TargetSeq != 0 {
		about = fmt.Sprintf("#%d", m.TargetSeq)
	}
	kind := strings.TrimPrefix(m.Kind.String(), "MESSAGE_KIND_")
	return strings.TrimRight(fmt.Sprintf("* %s %s %s %s %s", head, m.Sender, kind, about, chatClean(m.Text)), " ")
}

// chatClean turns newlines and tabs into spaces and drops other control
// characters, so text chosen by others cannot fake lines or send terminal
// escape sequences.
func chatClean(t string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		} else if unicode.IsControl(r) {
			return -1
		}
		return r
	}, t)
}

// chatDeviceID makes a device id of s: characters outside [A-Za-z0-9_-]
// become "-", at most 64 bytes, "parley-cli" if empty.
func chatDeviceID(s string) string {
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '-'
	}, s)
	if id == "" {
		return "parley-cli"
	}
	return id[:min(len(id), 64)]
}

// printf writes one line or block to out; writes never interleave.
func (s *chatSession) printf(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, format+"\n", args...)
}
