package supervisor

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// InitPrimary creates inst as a new primary and leaves it running: initdb
// (SCRAM authentication, the configured superuser, UTF8, C locale, data
// checksums), the configuration, the replication role, and last the
// marker. If the data directory is already ours it only makes sure the
// server runs. A failure undoes the attempt; a crash midway leaves an
// intent file by which the next call recognizes and clears the remains.
func (s *Supervisor) InitPrimary(ctx context.Context, clusterID string, inst Instance) error {
	if clusterID == "" {
		return fmt.Errorf("init %s: empty cluster id", inst)
	}
	unlock, err := s.lockInstance(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	state, err := s.classify(clusterID, inst)
	if err != nil {
		return err
	}
	if state == dirOurs {
		return s.startLocked(ctx, inst)
	}
	// Fail before initdb rather than at the first start.
	if _, running, _ := findPostmaster(inst.DataDir); !running {
		if err := checkListen(inst.Address, inst.Port); err != nil {
			return fmt.Errorf("init %s: %w", inst, err)
		}
	}
	undo, err := s.prepareDataDir(ctx, clusterID, inst, state)
	if err != nil {
		return fmt.Errorf("init %s: %w", inst, err)
	}
	if err := s.initPrimary(ctx, clusterID, inst); err != nil {
		undo()
		return fmt.Errorf("init %s: %w", inst, err)
	}
	s.log.Info("primary created", "dbid", inst.DBID, "content", inst.Content, "datadir", inst.DataDir)
	return nil
}

func (s *Supervisor) initPrimary(ctx context.Context, clusterID string, inst Instance) error {
	dd := inst.DataDir
	if err := s.initdb(ctx, dd); err != nil {
		return err
	}
	if err := s.appendStatic(dd); err != nil {
		return err
	}
	if err := s.writeFileAtomic(filepath.Join(dd, "pg_hba.conf"), []byte(s.hbaConf()), 0o600); err != nil {
		return err
	}
	if err := s.writeManagedConf(dd, managedConf{ListenAddresses: inst.Address, Port: inst.Port}); err != nil {
		return err
	}
	if err := s.startLocked(ctx, inst); err != nil {
		return err
	}
	if err := s.ensureReplRole(ctx, inst); err != nil {
		return err
	}
	return s.finishCreate(clusterID, inst)
}

func (s *Supervisor) initdb(ctx context.Context, dataDir string) error {
	// The password reaches initdb in a file only the OS user can read,
	// removed right after; never on a command line.
	pw, err := os.CreateTemp("", "gpagent-pwfile-*")
	if err != nil {
		return err
	}
	defer os.Remove(pw.Name())
	_, err = pw.WriteString(s.cfg.SuperPassword + "\n")
	if err == nil {
		err = pw.Chmod(0o600)
	}
	if err == nil {
		err = s.user.chown(pw.Name())
	}
	if cerr := pw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	s.log.Info("running initdb", "datadir", dataDir)
	args := []string{
		"-D", dataDir,
		"-U", s.cfg.SuperUser,
		"--pwfile=" + pw.Name(),
		"--auth=scram-sha-256",
		"-E", "UTF8",
		"--locale=C",
		"--data-checksums", // as Greenplum does by default
		"--no-instructions",
	}
	if s.noSync {
		args = append(args, "--no-sync")
	}
	return s.runTool(ctx, "initdb", args, nil, nil)
}

// ensureReplRole creates the replication role, or resets its password and
// attributes if it exists.
func (s *Supervisor) ensureReplRole(ctx context.Context, inst Instance) error {
	conn, err := s.connect(ctx, inst.Address, inst.Port)
	if err != nil {
		return fmt.Errorf("create replication role: %w", err)
	}
	defer closeConn(conn)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, s.cfg.ReplUser).Scan(&exists); err != nil {
		return fmt.Errorf("create replication role: %w", err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	pw, err := passwordLiteral(s.cfg.ReplPassword)
	if err != nil {
		return err
	}
	sql := fmt.Sprintf("%s ROLE %s WITH LOGIN REPLICATION PASSWORD %s", verb, pgx.Identifier{s.cfg.ReplUser}.Sanitize(), pw)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s replication role %s: %w", strings.ToLower(verb), s.cfg.ReplUser, err)
	}
	return nil
}

// passwordLiteral is the SQL literal for a role's password. For an ASCII
// password it is the SCRAM verifier, computed here, so the password itself
// never reaches the server, its logs (log_statement = 'ddl' would record
// the statement) or pg_stat_activity. The server applies SASLprep to
// non-ASCII passwords, which is not reimplemented here: those are sent as
// they are and hashed by the server (password_encryption is SCRAM).
func passwordLiteral(password string) (string, error) {
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			return "'" + strings.ReplaceAll(password, "'", "''") + "'", nil
		}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	v, err := scramVerifier(password, salt, 4096)
	if err != nil {
		return "", err
	}
	return "'" + v + "'", nil
}

// scramVerifier computes what PostgreSQL stores in pg_authid.rolpassword
// for SCRAM-SHA-256 (RFC 5802/7677): iterations, salt, StoredKey and
// ServerKey.
func scramVerifier(password string, salt []byte, iter int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(server)), nil
}
