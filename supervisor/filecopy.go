package supervisor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// FileSource reads the acting primary's data directory, through the agent
// on the primary's host. With one, a mirror is built by a parallel file
// copy between pg_backup_start and pg_backup_stop instead of by
// pg_basebackup, whose single stream reaches about half the speed of a
// plain copy of the same directory.
type FileSource interface {
	// List returns the directory's entries (Supervisor.DataFiles there).
	List(ctx context.Context) ([]DataFile, error)
	// Read returns the ranges as ServeDataFiles frames them.
	Read(ctx context.Context, ranges []FileRange) (io.ReadCloser, error)
}

// FileRange asks for N bytes of a data file from offset Off.
type FileRange struct {
	Path string `json:"path"`
	Off  int64  `json:"off"`
	N    int64  `json:"n"`
}

const (
	// copyStreams is how many requests a copy keeps in flight. Several
	// streams keep the disks and both agents busy where one stream waits
	// in turn on the read, the network and the write.
	copyStreams = 4
	// copyBatch is about the most one request asks for: small files go
	// many to a request, so that thousands of them cost few round trips,
	// and large ones are split, so that every stream works on a large
	// relation at once.
	copyBatch = 16 << 20
	// copyBatchFiles bounds the files of one request (and the files the
	// primary's agent holds open for it).
	copyBatchFiles = 256
	// controlFile is copied last, as pg_basebackup does.
	controlFile = "global/pg_control"
)

// fileCopy fills the empty dataDir with a copy of the primary's data
// directory taken as a non-exclusive base backup on up, with WAL held
// from its start by slot (which it creates), and writes backup_label.
// The new standby streams the WAL it needs through the slot.
func (s *Supervisor) fileCopy(ctx context.Context, dataDir string, up Upstream, slot string, progress func(done, total int64)) error {
	s.log.Info("copying data files", "datadir", dataDir, "upstream", fmt.Sprintf("%s:%d", up.Address, up.Port), "slot", slot)
	conn, err := s.connect(ctx, up.Address, up.Port)
	if err != nil {
		return fmt.Errorf("primary %s:%d: %w", up.Address, up.Port, err)
	}
	// Closing the session also ends a backup left running by a failure.
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
		return fmt.Errorf("create slot %s: %w", slot, err)
	}
	t0 := time.Now()
	if _, err := conn.Exec(ctx, `SELECT pg_backup_start($1, true)`, "gpagent "+slot); err != nil {
		return fmt.Errorf("pg_backup_start: %w", err)
	}
	t1 := time.Now()
	// Listed after the backup's checkpoint: a file made before it is
	// listed; one made after is made again by the WAL replayed.
	files, err := up.Files.List(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoListing, err)
	}
	copied, err := s.copyFiles(ctx, dataDir, files, up.Files, progress)
	if err != nil {
		return err
	}
	t2 := time.Now()
	var label string
	var spcmap *string
	if err := conn.QueryRow(ctx, `SELECT labelfile, spcmapfile FROM pg_backup_stop(false)`).Scan(&label, &spcmap); err != nil {
		return fmt.Errorf("pg_backup_stop: %w", err)
	}
	if spcmap != nil && *spcmap != "" {
		return fmt.Errorf("%w: the backup has a tablespace map", ErrNotCopyable)
	}
	s.log.Info("data files copied", "datadir", dataDir, "files", len(files), "bytes", copied,
		"checkpoint", t1.Sub(t0).Round(time.Millisecond), "copy", t2.Sub(t1).Round(time.Millisecond),
		"stop", time.Since(t2).Round(time.Millisecond))
	return s.writeOwnedFile(filepath.Join(dataDir, "backup_label"), []byte(label), 0o600)
}

// errNoListing says the primary's agent gave no listing of its data
// directory: it holds tablespaces, or is unreachable or too old to serve
// one. Nothing was copied yet.
var errNoListing = errors.New("no listing of the primary's data directory")

// copyFiles creates files' directories and files under dataDir, owned by
// the OS user, and fills them from src with copyStreams requests at a
// time, the control file last. A file that has shrunk keeps its listed
// size (zeros at the end) and one that is gone is left out, as
// pg_basebackup does: the WAL replayed from the backup's start brings
// both to the state of the end of the backup. It returns the bytes the
// listing counts.
func (s *Supervisor) copyFiles(ctx context.Context, dataDir string, files []DataFile, src FileSource, progress func(done, total int64)) (int64, error) {
	var total int64
	var batches [][]FileRange
	var batch []FileRange
	var batchBytes int64
	flush := func() {
		if len(batch) > 0 {
			batches = append(batches, batch)
			batch, batchBytes = nil, 0
		}
	}
	var control *DataFile
	for i, f := range files {
		local := filepath.Join(dataDir, filepath.FromSlash(f.Path))
		if !filepath.IsLocal(filepath.FromSlash(f.Path)) {
			return 0, fmt.Errorf("primary's file list: %q is not inside the data directory", f.Path)
		}
		if f.Dir {
			if err := os.Mkdir(local, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return 0, err
			}
			if err := s.user.chown(local); err != nil {
				return 0, err
			}
			continue
		}
		if err := s.createSized(local, f.Size); err != nil {
			return 0, err
		}
		total += f.Size
		switch {
		case f.Path == controlFile:
			control = &files[i]
		case f.Size > copyBatch:
			for off := int64(0); off < f.Size; off += copyBatch {
				batches = append(batches, []FileRange{{Path: f.Path, Off: off, N: min(copyBatch, f.Size-off)}})
			}
		case f.Size > 0:
			batch = append(batch, FileRange{Path: f.Path, N: f.Size})
			if batchBytes += f.Size; batchBytes >= copyBatch || len(batch) == copyBatchFiles {
				flush()
			}
		}
	}
	flush()
	if control == nil {
		return 0, fmt.Errorf("primary's file list has no %s", controlFile)
	}

	var done atomic.Int64
	report := func() {
		if progress != nil {
			progress(done.Load(), total)
		}
	}
	stopReports := make(chan struct{})
	reportsDone := make(chan struct{})
	go func() {
		defer close(reportsDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopReports:
				return
			case <-t.C:
				report()
			}
		}
	}()
	defer func() { close(stopReports); <-reportsDone; report() }()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan []FileRange)
	var goneMu sync.Mutex
	var gone []string // files the primary no longer has
	var wg sync.WaitGroup
	for range copyStreams {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for b := range work {
				g, err := s.copyBatch(ctx, dataDir, src, b, buf, &done)
				if err != nil {
					cancel(err)
				}
				goneMu.Lock()
				gone = append(gone, g...)
				goneMu.Unlock()
			}
		})
	}
feed:
	for _, b := range batches {
		select {
		case work <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	if len(gone) > 0 {
		s.log.Debug("files removed on the primary during the copy; left out", "count", len(gone), "first", gone[0])
	}
	for _, name := range gone {
		if err := os.Remove(filepath.Join(dataDir, filepath.FromSlash(name))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	}
	g, err := s.copyBatch(ctx, dataDir, src, []FileRange{{Path: control.Path, N: control.Size}}, make([]byte, 64<<10), &done)
	if err == nil && len(g) > 0 {
		err = fmt.Errorf("the primary has no %s", controlFile)
	}
	return total, err
}

// createSized creates an empty file of the given size, owned by the OS user.
func (s *Supervisor) createSized(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := s.user.chown(path); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copyBatch copies one request's ranges into place and returns the files
// found gone. It tries twice more after a failure: a file that shrank
// while being sent ends the answer early, and the next request sees its
// new size. Ranges are written in place, so a repeat is harmless.
func (s *Supervisor) copyBatch(ctx context.Context, dataDir string, src FileSource, b []FileRange, buf []byte, done *atomic.Int64) ([]string, error) {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		var gone []string
		gone, err = s.readBatch(ctx, dataDir, src, b, buf)
		if err == nil {
			// Progress counts what was asked: a file gone or shorter
			// is done too.
			for _, fr := range b {
				done.Add(fr.N)
			}
			return gone, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		s.log.Warn("copy of data files failed; trying again", "files", len(b), "first", b[0].Path, "offset", b[0].Off, "err", err)
	}
	return nil, fmt.Errorf("copy %s at %d (and %d more): %w", b[0].Path, b[0].Off, len(b)-1, err)
}

// readBatch reads one answer of src, frame after frame, into the files.
func (s *Supervisor) readBatch(ctx context.Context, dataDir string, src FileSource, b []FileRange, buf []byte) (gone []string, err error) {
	r, err := src.Read(ctx, b)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for _, fr := range b {
		var hdr [frameHeader]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("%s: frame header: %w", fr.Path, err)
		}
		n := int64(binary.BigEndian.Uint64(hdr[1:]))
		switch {
		case hdr[0] == frameGone:
			gone = append(gone, fr.Path)
			continue
		case hdr[0] != frameData || n > fr.N:
			return nil, fmt.Errorf("%s: bad frame (status %d, %d bytes of %d asked)", fr.Path, hdr[0], n, fr.N)
		}
		if err := s.writeRange(dataDir, fr, io.LimitReader(r, n), n, buf); err != nil {
			return nil, err
		}
	}
	return gone, nil
}

// writeRange writes n bytes of r at fr.Off of its file.
func (s *Supervisor) writeRange(dataDir string, fr FileRange, r io.Reader, n int64, buf []byte) error {
	f, err := os.OpenFile(filepath.Join(dataDir, filepath.FromSlash(fr.Path)), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	got, err := io.CopyBuffer(io.NewOffsetWriter(f, fr.Off), r, buf)
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", fr.Path, err)
	}
	// The copy stays in the page cache until the one syncfs of the whole
	// directory. Starting the write-back now keeps dirty pages from
	// piling up to the end, where the syncfs would wait for all of them.
	_ = unix.SyncFileRange(int(f.Fd()), fr.Off, n, unix.SYNC_FILE_RANGE_WRITE)
	return f.Close()
}

// The answer to a Read is one frame per range asked, in order: a status
// byte and a big-endian uint64 length, then that many bytes.
const (
	frameHeader = 9
	frameData   = 0 // the bytes follow, at most the range's N: fewer if the file is shorter
	frameGone   = 1 // the file is gone; length 0
)

// ServeDataFiles writes ranges of inst's data files to w in frames.
// setLength is called with the answer's length before anything is
// written (with it set, an HTTP server sends the files with sendfile).
// A file that changes size meanwhile makes the answer shorter or longer
// than announced; the client finds out and asks again.
//
// The length comes from the files' sizes; each file is opened only while
// its range is sent, so an answer holds one file open however many
// ranges it has (it once opened them all first: a file descriptor per
// range, times every copy in flight).
func (s *Supervisor) ServeDataFiles(inst Instance, ranges []FileRange, w io.Writer, setLength func(int64)) error {
	if err := inst.validate(); err != nil {
		return err
	}
	root, err := os.OpenRoot(inst.DataDir)
	if err != nil {
		return err
	}
	defer root.Close()
	sizes := make([]int64, len(ranges)) // -1: gone
	var total int64
	for i, fr := range ranges {
		total += frameHeader
		if fr.Off < 0 || fr.N < 0 {
			return fmt.Errorf("%s: bad range %d+%d", fr.Path, fr.Off, fr.N)
		}
		size, err := dataFileSize(root, fr.Path)
		if errors.Is(err, fs.ErrNotExist) {
			sizes[i] = -1
			continue
		}
		if err != nil {
			return err
		}
		sizes[i] = max(0, min(fr.N, size-fr.Off))
		total += sizes[i]
	}
	setLength(total)
	for i, n := range sizes {
		if err := serveRange(root, ranges[i], n, w); err != nil {
			return err
		}
	}
	return nil
}

// serveRange writes the frame of one range of n bytes (-1: the file was
// gone when the length was counted).
func serveRange(root *os.Root, fr FileRange, n int64, w io.Writer) error {
	var hdr [frameHeader]byte
	if n < 0 {
		hdr[0] = frameGone
	}
	binary.BigEndian.PutUint64(hdr[1:], uint64(max(n, 0)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if n <= 0 {
		return nil
	}
	// Gone since it was counted: the answer ends short of its length.
	f, err := openDataFile(root, fr.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(fr.Off, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.CopyN(w, f, n); err != nil {
		return fmt.Errorf("%s: %w", fr.Path, err)
	}
	return nil
}
