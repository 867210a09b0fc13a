package actors

import (
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

func TestTrimImportResult(t *testing.T) {
	small := &pb.ImportResult{Added: make([]*pb.Member, 3), AddedCount: 3}
	if trimResult(small) != small {
		t.Fatal("a small result was copied")
	}
	big := &pb.ImportResult{Invitations: make([]*pb.Invitation, 2500), InvitedCount: 2500, AlreadyMembers: []string{"u1"}}
	for i := range big.Invitations {
		big.Invitations[i] = &pb.Invitation{Id: "g/x"}
	}
	tr := trimResult(big)
	if len(tr.Invitations) != maxResultEntries || !tr.Truncated || tr.InvitedCount != 2500 || len(tr.AlreadyMembers) != 1 {
		t.Fatalf("trimmed: %d invitations, truncated %v, count %d", len(tr.Invitations), tr.Truncated, tr.InvitedCount)
	}
	if len(big.Invitations) != 2500 || big.Truncated {
		t.Fatal("the stored result was changed")
	}
}
