package persistence

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Blobs is the on-disk half of file storage: a content-addressed blob store
// and the temp files of uploads in progress, both under one root (the data
// directory by default):
//
//	<root>/blobs/ab/cdef…   the blob whose hex SHA-256 is abcdef…
//	<root>/uploads/<id>     the bytes of upload <id> received so far
//
// Both live on one filesystem, so a finished upload becomes a blob by a
// rename. A blob is durable before anyone is told about it: Put fsyncs the
// file (the caller did), renames it and fsyncs the directory. Metadata and
// reference counts live in the Store (KindFile), written by the File grain
// only after Put returned.
type Blobs struct {
	root    string
	blobs   string
	uploads string
}

// ErrBadHash reports a blob name that is not 64 lowercase hex digits.
var ErrBadHash = errors.New("persistence: not a hex SHA-256")

// OpenBlobs opens (creating if needed) the blob store under root.
func OpenBlobs(root string) (*Blobs, error) {
	b := &Blobs{root: root, blobs: filepath.Join(root, "blobs"), uploads: filepath.Join(root, "uploads")}
	for _, d := range []string{b.blobs, b.uploads} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("persistence: blob store: %w", err)
		}
	}
	if err := syncDir(root); err != nil {
		return nil, err
	}
	return b, nil
}

// ValidHash reports whether h is 64 lowercase hex digits.
func ValidHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Path is where the blob of hash lives.
func (b *Blobs) Path(hash string) string {
	return filepath.Join(b.blobs, hash[:2], hash[2:])
}

// Has reports whether the blob of hash is stored.
func (b *Blobs) Has(hash string) bool {
	if !ValidHash(hash) {
		return false
	}
	_, err := os.Stat(b.Path(hash))
	return err == nil
}

// Open opens the blob of hash for reading.
func (b *Blobs) Open(hash string) (*os.File, error) {
	if !ValidHash(hash) {
		return nil, ErrBadHash
	}
	f, err := os.Open(b.Path(hash))
	if err != nil {
		return nil, fmt.Errorf("persistence: open blob: %w", err)
	}
	return f, nil
}

// Put moves the fsynced file at temp into the store as the blob of hash and
// makes the move durable (directory fsync). The caller guarantees that temp
// holds exactly the content of hash.
func (b *Blobs) Put(hash, temp string) error {
	if !ValidHash(hash) {
		return ErrBadHash
	}
	dir := filepath.Join(b.blobs, hash[:2])
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("persistence: blob dir: %w", err)
		}
		if err := syncDir(b.blobs); err != nil {
			return err
		}
	}
	if err := os.Rename(temp, b.Path(hash)); err != nil {
		return fmt.Errorf("persistence: store blob: %w", err)
	}
	return syncDir(dir)
}

// Remove deletes the blob of hash (no error if it is absent).
func (b *Blobs) Remove(hash string) error {
	if !ValidHash(hash) {
		return ErrBadHash
	}
	if err := os.Remove(b.Path(hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("persistence: remove blob: %w", err)
	}
	return syncDir(filepath.Join(b.blobs, hash[:2]))
}

// List calls fn with the hash of every stored blob.
func (b *Blobs) List(fn func(hash string)) error {
	return filepath.WalkDir(b.blobs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(b.blobs, path)
		if h := strings.ReplaceAll(rel, string(filepath.Separator), ""); ValidHash(h) {
			fn(h)
		}
		return nil
	})
}

// UploadPath is the temp file of an upload.
func (b *Blobs) UploadPath(uploadID string) string {
	return filepath.Join(b.uploads, uploadID)
}

// CreateUpload creates the (empty) temp file of an upload durably.
func (b *Blobs) CreateUpload(uploadID string) error {
	f, err := os.OpenFile(b.UploadPath(uploadID), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("persistence: create upload file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("persistence: create upload file: %w", err)
	}
	return syncDir(b.uploads)
}

// RemoveUpload deletes an upload's temp file (no error if absent).
func (b *Blobs) RemoveUpload(uploadID string) error {
	if err := os.Remove(b.UploadPath(uploadID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("persistence: remove upload file: %w", err)
	}
	return nil
}

// ListUploads calls fn with the id of every upload temp file.
func (b *Blobs) ListUploads(fn func(uploadID string)) error {
	ents, err := os.ReadDir(b.uploads)
	if err != nil {
		return fmt.Errorf("persistence: list uploads: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			fn(e.Name())
		}
	}
	return nil
}

// syncDir fsyncs a directory, making renames and creations in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("persistence: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("persistence: sync dir %s: %w", dir, err)
	}
	return nil
}

// CopyBlobs copies the blob store under root into the same place under
// out, hard-linking where it can (blobs never change) and copying where it
// cannot. It returns the number of blobs. A root without blobs is fine.
func CopyBlobs(root, out string) (int, error) {
	src := filepath.Join(root, "blobs")
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	n := 0
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		dst := filepath.Join(out, "blobs", rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		n++
		if os.Link(path, dst) == nil {
			return nil
		}
		return copyFile(path, dst)
	})
	if err != nil {
		return n, fmt.Errorf("persistence: copy blobs: %w", err)
	}
	return n, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
