package protocol

// Stable error codes carried in Error.code. Clients switch on these; never
// change the meaning of one. docs/protocol.md has the table.
const (
	CodeBadJSON            = "bad_json"            // the frame is not valid JSON
	CodeBadFrame           = "bad_frame"           // JSON, but not an object with "id" and one command
	CodeMissingID          = "missing_id"          // "id" absent or empty
	CodeBadID              = "bad_id"              // "id" not a string of 1..64 bytes
	CodeUnknownCommand     = "unknown_command"     // the command name is not in this version
	CodeMultipleCommands   = "multiple_commands"   // more than one command in a frame
	CodeBadField           = "bad_field"           // a field has the wrong type or an unknown name
	CodeInvalidArgument    = "invalid_argument"    // a value is out of range or missing
	CodeUnsupportedVersion = "unsupported_version" // no common protocol version
	CodeHelloRequired      = "hello_required"      // the first frame must be hello
	CodeAlreadyHello       = "already_hello"       // hello sent twice on a link
	CodeUnauthenticated    = "unauthenticated"     // command needs a logged-in link
	CodeAlreadyAuthed      = "already_authenticated"
	CodeBadToken           = "bad_token"       // token unknown, revoked, expired or for another device
	CodeBadCredentials     = "bad_credentials" // username or password wrong
	CodeUsernameTaken      = "username_taken"
	CodeTextTooLong        = "text_too_long"
	CodeRateLimited        = "rate_limited"
	CodeTooManyInFlight    = "too_many_in_flight" // too many commands awaiting replies on this link
	CodeNotFound           = "not_found"          // unknown conversation, user or message
	CodeNotMember          = "not_member"         // the user is not a member of the conversation
	CodeForbidden          = "forbidden"          // member, but the role does not allow it
	CodeBadSeq             = "bad_seq"            // ack or read marker beyond what exists
	CodeConflict           = "conflict"           // e.g. a client id reused for different content
	CodeUnavailable        = "unavailable"        // try again (timeout, shutting down)
	CodeStorage            = "storage"            // the store failed; nothing was acknowledged
	CodeInternal           = "internal"

	// Refusals of a session rebuild (Hello.resume). After any of them the
	// link is still waiting for hello: send a plain hello with the token
	// (and cursors) to open a fresh session.
	CodeSessionUnknown   = "session_unknown"   // no such session
	CodeSessionExpired   = "session_expired"   // cut longer than the keep window, or ended
	CodeBadRebuildToken  = "bad_rebuild_token" // the rebuild token does not match
	CodeSessionForeign   = "session_foreign"   // the session belongs to another user or device
	CodeSeqInFuture      = "seq_in_future"     // last_session_seq beyond what the session sent
	CodeBufferOverflowed = "buffer_overflowed" // events after last_session_seq were dropped

	// Channel import (importChannel, answerInvitation).
	CodeNotGroupAdmin     = "not_group_admin"    // the requester is not an admin (or owner) of the group
	CodeNotChannelAdmin   = "not_channel_admin"  // the requester is not an admin of the channel
	CodeInvitationExpired = "invitation_expired" // the invitation expired before it was answered
	// P2SP downloads.
	CodeBadGrant    = "bad_grant"    // a P2SP grant that is forged, expired, or names other parties
	CodePeerOffline = "peer_offline" // the signal's target session has no link now
	// Calls.
	CodeBusy              = "busy"               // you are already in another call
	CodeCallEnded         = "call_ended"         // the call is over
	CodeNotInCall         = "not_in_call"        // no part of yours in the call matches the request
	CodeAnsweredElsewhere = "answered_elsewhere" // another device of yours answered the call
	CodeAlreadyJoined     = "already_joined"     // this device is in the call with another join_id
	CodeCallState         = "call_state"         // early or stale: the request does not fit the state; nothing changed
	CodeBadSDP            = "bad_sdp"            // the SDP (or ICE candidate) does not parse or does not fit the negotiation
	CodeMediaUnavailable  = "media_unavailable"  // the node has no media service
)

// WebSocket close codes Parley uses (4000-4999 is the application range).
const (
	CloseNormal          = 1000 // the client or server closed normally
	CloseGoingAway       = 1001 // server shutting down: reconnect (rebuild) elsewhere or later
	CloseProtocolError   = 1002
	CloseInvalidUTF8     = 1007 // a text frame was not valid UTF-8
	CloseTooLarge        = 1009 // a frame exceeded the maximum frame size
	CloseAuthTimeout     = 4001 // no successful hello/login within the auth deadline
	CloseSlowConsumer    = 4002 // the outbound queue overflowed
	CloseIdleTimeout     = 4003 // no frame (not even a ping) within the idle timeout
	CloseSessionReplaced = 4004 // a newer link took over this session (or device)
	CloseLoggedOut       = 4005 // the token was revoked
	CloseUnsupported     = 4006 // no common protocol version
	CloseFlood           = 4007 // the link kept exceeding its rate limit
	CloseSessionMoved    = 4008 // the session was rebuilt on a newer link
)
