package actors

import (
	"fmt"
	"slices"
	"strings"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// ChannelMembership applies a channel's notice to the user's channel list
// (docs/protocol.md §16): the channel commits it in its outbox with the
// membership change and sends it until it is applied. A notice whose
// version is not above the stored entry's is stale (a retry, a reordering)
// and changes nothing; a fresh one is saved, then pushed to every session
// as channelAdded or channelRemoved.
func (g *userGrain) ChannelMembership(req *grainpb.ChannelMembershipReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	e := req.Channel
	if e == nil || e.ChannelId == "" {
		return nil, grainError(pb.CodeInvalidArgument, "no channel")
	}
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	i := slices.IndexFunc(rec.Channels, func(c *grainpb.ChannelEntry) bool { return c.ChannelId == e.ChannelId })
	if i >= 0 && rec.Channels[i].Version >= e.Version {
		return &grainpb.Ok{}, nil
	}
	if i >= 0 {
		rec.Channels[i] = e
	} else {
		rec.Channels = append(rec.Channels, e)
	}
	if err := g.save(rec); err != nil {
		return nil, err
	}
	ev := &pb.SessionEvent{TimeMs: g.n.now()}
	if e.Left {
		ev.Event = &pb.SessionEvent_ChannelRemoved{ChannelRemoved: &pb.ChannelRemoved{ChannelId: e.ChannelId}}
	} else {
		ev.Event = &pb.SessionEvent_ChannelAdded{ChannelAdded: &pb.ChannelAdded{Channel: channelOfEntry(e)}}
	}
	op := fmt.Sprintf("k/%s/%d", e.ChannelId, e.Version)
	for _, d := range rec.Devices {
		if d.SessionId != "" {
			g.push(d.SessionId, &grainpb.PushReq{Event: ev, OpId: op})
		}
	}
	return &grainpb.Ok{}, nil
}

// Channels lists the channels the user is a member of, sorted by id.
func (g *userGrain) Channels(req *grainpb.ListReq, ctx cluster.GrainContext) (*pb.ChannelList, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	out := &pb.ChannelList{}
	for _, c := range g.rec.Channels {
		if !c.Left {
			out.Channels = append(out.Channels, channelOfEntry(c))
		}
	}
	slices.SortFunc(out.Channels, func(a, b *pb.Channel) int { return strings.Compare(a.Id, b.Id) })
	return out, nil
}

func channelOfEntry(e *grainpb.ChannelEntry) *pb.Channel {
	return &pb.Channel{Id: e.ChannelId, Title: e.Title, Level: e.Level}
}

// ListChannels returns the user's channels.
func (n *Node) ListChannels(actor string) (*pb.ChannelList, error) {
	return grainpb.GetUserGrainClient(n.Cluster, actor).Channels(&grainpb.ListReq{}, n.callOpts()...)
}
