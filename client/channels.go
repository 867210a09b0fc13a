package client

import (
	"context"
	"errors"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Channels (online-only rooms) and channel imports; docs/protocol.md §15
// and §16.

// CreateChannel creates a channel (you are its admin) with members. It
// carries a client id, so a retry after a lost reply returns the same
// channel.
func (c *Client) CreateChannel(ctx context.Context, title string, members ...string) (*pb.Channel, error) {
	f, err := c.retry(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CreateChannel{CreateChannel: &pb.CreateChannel{
		Title: title, Members: members, ClientId: NewClientID()}}})
	if err != nil {
		return nil, err
	}
	return f.GetChannel(), nil
}

// AddChannelMembers adds users to a channel at level (unspecified: member;
// users already in get level if it is set). Channel admins only.
func (c *Client) AddChannelMembers(ctx context.Context, channel string, level pb.ChannelLevel, users ...string) (*pb.Channel, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_AddChannelMembers{AddChannelMembers: &pb.AddChannelMembers{
		ChannelId: channel, UserIds: users, Level: level}}})
	if err != nil {
		return nil, err
	}
	return f.GetChannel(), nil
}

// RemoveChannelMember removes a member (an admin, or yourself).
func (c *Client) RemoveChannelMember(ctx context.Context, channel, user string) (*pb.Channel, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_RemoveChannelMember{RemoveChannelMember: &pb.RemoveChannelMember{
		ChannelId: channel, UserId: user}}})
	if err != nil {
		return nil, err
	}
	return f.GetChannel(), nil
}

// JoinChannel makes you present in the channel on this client's link:
// from now on its messages and presence events arrive in Events. With
// Options.Reconnect the client joins again after every reconnect (presence
// does not survive a dropped link).
func (c *Client) JoinChannel(ctx context.Context, channel string) (*pb.Channel, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_JoinChannel{JoinChannel: &pb.JoinChannel{ChannelId: channel}}})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.joined == nil {
		c.joined = map[string]bool{}
	}
	c.joined[channel] = true
	c.mu.Unlock()
	return f.GetChannel(), nil
}

// LeaveChannel makes you absent in the channel on this link.
func (c *Client) LeaveChannel(ctx context.Context, channel string) (*pb.Channel, error) {
	c.mu.Lock()
	delete(c.joined, channel)
	c.mu.Unlock()
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_LeaveChannel{LeaveChannel: &pb.LeaveChannel{ChannelId: channel}}})
	if err != nil {
		return nil, err
	}
	return f.GetChannel(), nil
}

// rejoinChannels joins the channels joined before a reconnect.
func (c *Client) rejoinChannels() {
	c.mu.Lock()
	chs := make([]string, 0, len(c.joined))
	for ch := range c.joined {
		chs = append(chs, ch)
	}
	c.mu.Unlock()
	for _, ch := range chs {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		_, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_JoinChannel{JoinChannel: &pb.JoinChannel{ChannelId: ch}}})
		cancel()
		if code := Code(err); code == pb.CodeNotMember || code == pb.CodeNotFound {
			c.mu.Lock()
			delete(c.joined, ch)
			c.mu.Unlock()
		}
	}
}

// ChannelSend sends text to the members present in the channel now. A
// retry (same client id) after a timeout is not delivered twice.
func (c *Client) ChannelSend(ctx context.Context, channel, text string) (*pb.ChannelSent, error) {
	f, err := c.retry(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ChannelSend{ChannelSend: &pb.ChannelSend{
		ChannelId: channel, Text: text, ClientId: NewClientID()}}})
	if err != nil {
		return nil, err
	}
	return f.GetChannelSent(), nil
}

// ChannelInfo returns the channel's members, levels and present users.
func (c *Client) ChannelInfo(ctx context.Context, channel string) (*pb.Channel, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ChannelInfo{ChannelInfo: &pb.ChannelInfo{ChannelId: channel}}})
	if err != nil {
		return nil, err
	}
	return f.GetChannel(), nil
}

// ImportChannel adds a channel's members to a group (you must be admin of
// both). It is idempotent by opID: it retries through timeouts and dropped
// links with the same opID, so the import happens once.
func (c *Client) ImportChannel(ctx context.Context, group, channel string, mode pb.ImportMode, opID string) (*pb.ImportResult, error) {
	if opID == "" {
		opID = NewClientID()
	}
	f, err := c.retryUnavailable(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ImportChannel{ImportChannel: &pb.ImportChannel{
		GroupId: group, ChannelId: channel, Mode: mode, OpId: opID}}})
	if err != nil {
		return nil, err
	}
	return f.GetImportResult(), nil
}

// retryUnavailable is retry without retrying rate_limited: an import's
// wait can be long, and is for the caller to decide.
func (c *Client) retryUnavailable(ctx context.Context, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	for attempt := 0; ; attempt++ {
		f.Id = ""
		r, err := c.Call(ctx, f)
		if err == nil {
			return r, nil
		}
		code := Code(err)
		retryable := code == pb.CodeUnavailable || code == "" && !errors.Is(err, ErrClosed) && ctx.Err() == nil
		if !retryable || (attempt >= 5 && !c.opts.Reconnect) {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(min(50*(attempt+1), 500)) * time.Millisecond):
		case <-c.closed:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// AnswerInvitation accepts or declines an invitation (declining also
// removes you from its channel). Answers are idempotent: the first stands.
func (c *Client) AnswerInvitation(ctx context.Context, invitationID string, accept bool) (*pb.InvitationAnswered, error) {
	f, err := c.retry(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_AnswerInvitation{AnswerInvitation: &pb.AnswerInvitation{
		InvitationId: invitationID, Accept: accept}}})
	if err != nil {
		return nil, err
	}
	return f.GetInvitationAnswered(), nil
}

// ListChannels returns the channels you are a member of (id, title, your
// level), sorted by id. Changes arrive in Events as the session events
// channelAdded (you were added, or your level changed) and channelRemoved;
// see ChannelAdded and ChannelRemoved.
func (c *Client) ListChannels(ctx context.Context) ([]*pb.Channel, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ListChannels{ListChannels: &pb.ListChannels{}}})
	if err != nil {
		return nil, err
	}
	return f.GetChannelList().GetChannels(), nil
}

// ChannelAdded returns the channel of a channelAdded session event (you
// became a member, or your level changed), or nil.
func (e Event) ChannelAdded() *pb.Channel { return e.Session.GetChannelAdded().GetChannel() }

// ChannelRemoved returns the id of the channel of a channelRemoved session
// event (you are no longer a member), or "".
func (e Event) ChannelRemoved() string { return e.Session.GetChannelRemoved().GetChannelId() }

// ListInvitations returns your pending invitations.
func (c *Client) ListInvitations(ctx context.Context) ([]*pb.Invitation, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ListInvitations{ListInvitations: &pb.ListInvitations{}}})
	if err != nil {
		return nil, err
	}
	return f.GetInvitationList().GetInvitations(), nil
}

// SendToSubgroup posts text to one sub-group of a group: its members get
// it, the others a HIDDEN placeholder at the same seq.
func (c *Client) SendToSubgroup(ctx context.Context, conv, subgroup, text string) (*pb.Sent, error) {
	return c.SendMessage(ctx, &pb.Send{ConversationId: conv, Subgroup: subgroup, Text: text, ClientId: NewClientID()})
}
