package persistence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
)

// DefaultPieceSize is the piece size of file hashes (P2SP transfers verify
// pieces of this size).
const DefaultPieceSize = 256 << 10

// Digest is the hashes of a file: the whole content and each piece.
type Digest struct {
	// SHA256 is the lowercase hex SHA-256 of the whole content.
	SHA256 string
	Size   int64
	// PieceSize is the size of every piece but the last.
	PieceSize int64
	// Pieces holds the SHA-256 of each piece, in order.
	Pieces [][]byte
}

// HashReader reads r to the end and returns its digest. The whole-content
// hash and the piece hashes are computed in parallel over the same blocks,
// so hashing costs about one SHA-256 pass of wall time on two cores.
func HashReader(r io.Reader, pieceSize int64) (Digest, error) {
	if pieceSize <= 0 {
		return Digest{}, errors.New("persistence: piece size must be positive")
	}
	const block = 4 << 20
	buf := make([]byte, block)
	whole := sha256.New()
	piece := sha256.New()
	var inPiece int64
	d := Digest{PieceSize: pieceSize}
	var wg sync.WaitGroup
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			b := buf[:n]
			wg.Add(1)
			go func(block []byte) {
				defer wg.Done()
				whole.Write(block)
			}(b)
			for len(b) > 0 {
				take := min(int64(len(b)), pieceSize-inPiece)
				piece.Write(b[:take])
				inPiece += take
				b = b[take:]
				if inPiece == pieceSize {
					d.Pieces = append(d.Pieces, piece.Sum(nil))
					piece.Reset()
					inPiece = 0
				}
			}
			wg.Wait()
			d.Size += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return Digest{}, fmt.Errorf("persistence: hash: %w", err)
		}
	}
	if inPiece > 0 {
		d.Pieces = append(d.Pieces, piece.Sum(nil))
	}
	d.SHA256 = hex.EncodeToString(whole.Sum(nil))
	return d, nil
}
