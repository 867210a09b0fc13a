package actors

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// dedupeGen is the generation of a dedupe record written at timeMs: one
// generation per dedupe window. A lookup reads the current and previous
// generation; older generations are dropped with one range delete, so a
// record lives between one and two windows and cleanup never scans.
func dedupeGen(timeMs int64) uint32 { return uint32(timeMs / dedupeWindow.Milliseconds()) }

// dedupeKey is the store key of a send's dedupe record: generation, then
// the length-prefixed parts, so that no two triples share a key.
func dedupeKey(conv string, gen uint32, k conversation.DedupeKey) []byte {
	suffix := binary.BigEndian.AppendUint32(nil, gen)
	for _, part := range []string{k.User, k.Device, k.ClientID} {
		suffix = append(suffix, byte(len(part)))
		suffix = append(suffix, part...)
	}
	return persistence.EncodeKey(persistence.KindDedupe, conv, suffix)
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("actors: marshal %T: %v", m, err))
	}
	return b
}

// encodeWrite adds one machine write to the batch.
func encodeWrite(b *persistence.Batch, conv string, w conversation.Write) {
	switch {
	case w.Conv != nil:
		b.Set(persistence.EncodeKey(persistence.KindConv, conv, nil), mustMarshal(w.Conv))
	case w.Member != nil:
		k := persistence.EncodeKey(persistence.KindMember, conv, []byte(w.Member.User))
		if w.Member.Record == nil {
			b.Delete(k)
		} else {
			b.Set(k, mustMarshal(w.Member.Record))
		}
	case w.Message != nil:
		b.Set(persistence.EncodeKey(persistence.KindMessage, conv, persistence.SeqSuffix(w.Message.Seq)), mustMarshal(w.Message))
	case w.Dedupe != nil:
		b.Set(dedupeKey(conv, dedupeGen(w.Dedupe.Record.TimeMs), w.Dedupe.Key), mustMarshal(w.Dedupe.Record))
	case w.Outbox != nil:
		b.Set(persistence.EncodeKey(persistence.KindConvOutbox, conv, []byte(w.Outbox.OpID)), mustMarshal(w.Outbox.Record))
	case w.File != nil:
		k := persistence.EncodeKey(persistence.KindConvFile, conv, persistence.SeqSuffix(w.File.Seq))
		if w.File.Record == nil {
			b.Delete(k)
		} else {
			b.Set(k, mustMarshal(w.File.Record))
		}
	case w.Invitation != nil:
		_, local, _ := conversation.SplitInvitationID(w.Invitation.Invitation.GetId())
		b.Set(persistence.EncodeKey(persistence.KindInvitation, conv, []byte(local)), mustMarshal(w.Invitation))
	case w.Import != nil:
		b.Set(persistence.EncodeKey(persistence.KindImport, conv, []byte(conversation.ImportKey(w.Import.Actor, w.Import.OpId))), mustMarshal(w.Import))
	}
}

// loadConversation rebuilds a conversation's state and pending outbox.
func loadConversation(s *persistence.Store, id string) (*conversation.State, map[string]*grainpb.OutboxRecord, error) {
	st := conversation.NewState(id)
	v, err := s.Get(persistence.EncodeKey(persistence.KindConv, id, nil))
	if errors.Is(err, persistence.ErrNotFound) {
		return st, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	rec := &grainpb.ConvRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, nil, fmt.Errorf("decode conversation %s: %w", id, err)
	}
	st.Exists, st.Kind, st.Title, st.Created = true, rec.Kind, rec.Title, rec.CreatedMs
	var scanErr error
	mp := persistence.EntityPrefix(persistence.KindMember, id)
	err = s.Scan(mp, persistence.PrefixEnd(mp), 0, func(k, v []byte) bool {
		m := &grainpb.MemberRecord{}
		if scanErr = proto.Unmarshal(v, m); scanErr != nil {
			return false
		}
		st.Members[string(k[len(mp):])] = m
		return true
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load members of %s: %w", id, err)
	}
	fp := persistence.EntityPrefix(persistence.KindConvFile, id)
	err = s.Scan(fp, persistence.PrefixEnd(fp), 0, func(k, v []byte) bool {
		var seq int64
		if seq, scanErr = persistence.DecodeSeqSuffix(k[len(fp):]); scanErr != nil {
			return false
		}
		f := &grainpb.ConvFileRecord{}
		if scanErr = proto.Unmarshal(v, f); scanErr != nil {
			return false
		}
		st.Files[seq] = f
		return true
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load files of %s: %w", id, err)
	}
	lp := persistence.EntityPrefix(persistence.KindMessage, id)
	k, _, err := s.Last(lp, persistence.PrefixEnd(lp))
	switch {
	case errors.Is(err, persistence.ErrNotFound):
	case err != nil:
		return nil, nil, err
	default:
		if st.LastSeq, err = persistence.DecodeSeqSuffix(k[len(lp):]); err != nil {
			return nil, nil, err
		}
	}
	outbox, err := loadOutbox(s, persistence.KindConvOutbox, id)
	if err != nil {
		return nil, nil, err
	}
	st.Subgroups = rec.Subgroups
	if err := loadImports(s, st); err != nil {
		return nil, nil, err
	}
	return st, outbox, nil
}

// loadImports reads a group's invitations and done imports.
func loadImports(s *persistence.Store, st *conversation.State) error {
	var invs []*grainpb.InvitationRecord
	if err := scanRecords(s, persistence.KindInvitation, st.ID, func() proto.Message {
		r := &grainpb.InvitationRecord{}
		invs = append(invs, r)
		return r
	}); err != nil {
		return fmt.Errorf("load invitations of %s: %w", st.ID, err)
	}
	var imps []*grainpb.ImportRecord
	if err := scanRecords(s, persistence.KindImport, st.ID, func() proto.Message {
		r := &grainpb.ImportRecord{}
		imps = append(imps, r)
		return r
	}); err != nil {
		return fmt.Errorf("load imports of %s: %w", st.ID, err)
	}
	st.RestoreImports(invs, imps)
	return nil
}

// scanRecords decodes every value under EntityPrefix(kind, id) into a
// message from next.
func scanRecords(s *persistence.Store, kind persistence.Kind, id string, next func() proto.Message) error {
	p := persistence.EntityPrefix(kind, id)
	var decErr error
	err := s.Scan(p, persistence.PrefixEnd(p), 0, func(_, v []byte) bool {
		decErr = proto.Unmarshal(v, next())
		return decErr == nil
	})
	if err == nil {
		err = decErr
	}
	return err
}

func loadMessage(s *persistence.Store, conv string, seq int64) (*pb.Message, error) {
	v, err := s.Get(persistence.EncodeKey(persistence.KindMessage, conv, persistence.SeqSuffix(seq)))
	if err != nil {
		return nil, err
	}
	m := &pb.Message{}
	if err := proto.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("decode message %s/%d: %w", conv, seq, err)
	}
	return m, nil
}

// loadMessages reads entries from..to (inclusive), at most limit.
func loadMessages(s *persistence.Store, conv string, from, to int64, limit int) ([]*pb.Message, error) {
	if from > to {
		return nil, nil
	}
	lower := persistence.EncodeKey(persistence.KindMessage, conv, persistence.SeqSuffix(from))
	upper := persistence.EncodeKey(persistence.KindMessage, conv, persistence.SeqSuffix(to+1))
	var out []*pb.Message
	var decErr error
	err := s.Scan(lower, upper, limit, func(_, v []byte) bool {
		m := &pb.Message{}
		if decErr = proto.Unmarshal(v, m); decErr != nil {
			return false
		}
		out = append(out, m)
		return true
	})
	if err == nil {
		err = decErr
	}
	return out, err
}

// sweepDedupe deletes dedupe generations older than the previous one.
func sweepDedupe(s *persistence.Store, conv string, now int64) error {
	gen := dedupeGen(now)
	if gen < 2 {
		return nil
	}
	p := persistence.EntityPrefix(persistence.KindDedupe, conv)
	b := s.NewBatch(persistence.KindConv, conv)
	b.DeleteRange(p, append(append([]byte(nil), p...), binary.BigEndian.AppendUint32(nil, gen-1)...))
	return b.Commit()
}
