package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Names of the CA files in the CA directory.
const (
	CACertFile = "llmtape-ca.pem"     // the certificate clients must trust (mode 0644)
	CAKeyFile  = "llmtape-ca-key.pem" // its private key (mode 0600)
)

// CA is the certificate authority that signs the certificates of intercepted hosts.
type CA struct {
	Cert     tls.Certificate // certificate and key, with Leaf parsed
	CertFile string          // path of the PEM certificate to give to clients
	KeyFile  string          // path of the PEM private key
	Created  bool            // true when LoadOrCreateCA generated it just now
}

// LoadOrCreateCA loads the CA kept in dir, or generates one (ECDSA P-256, valid 10 years)
// and writes it there: the key with mode 0600, the directory with 0700 if it is created.
func LoadOrCreateCA(dir string) (*CA, error) {
	ca := &CA{CertFile: filepath.Join(dir, CACertFile), KeyFile: filepath.Join(dir, CAKeyFile)}
	certPEM, cerr := os.ReadFile(ca.CertFile)
	keyPEM, kerr := os.ReadFile(ca.KeyFile)
	switch {
	case cerr == nil && kerr == nil:
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load ca %s: %w", dir, err)
		}
		if cert.Leaf == nil {
			if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("load ca %s: %w", dir, err)
			}
		}
		ca.Cert = cert
		return ca, nil
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return nil, fmt.Errorf("load ca: %w", cerr)
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return nil, fmt.Errorf("load ca: %w", kerr)
	default:
		return nil, fmt.Errorf("load ca %s: only one of %s and %s exists; remove it to generate a new CA", dir, CACertFile, CAKeyFile)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "llmtape recording proxy CA (" + host + ")", Organization: []string{"llmtape"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	if err := writeNew(ca.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	if err := writeNew(ca.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	ca.Cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	ca.Created = true
	return ca, nil
}

// writeNew writes a file that must not exist yet, with mode perm (not widened by umask games:
// the mode is set explicitly after creation).
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Pool returns a certificate pool holding only the CA (for clients in tests and tools).
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert.Leaf)
	return p
}

// TrustHint says how to make common clients trust the CA.
func (ca *CA) TrustHint() string {
	f := ca.CertFile
	return "to trust the llmtape CA for intercepted HTTPS, give clients its certificate " + f + ":\n" +
		"  export SSL_CERT_FILE=" + f + "        # Go, OpenSSL-based tools, curl, Python httpx and the openai SDK (replaces the roots: add them to a bundle if other hosts matter)\n" +
		"  export NODE_EXTRA_CA_CERTS=" + f + "  # Node.js (added to the built-in roots)\n" +
		"  export REQUESTS_CA_BUNDLE=" + f + "   # Python requests (replaces certifi's roots)\n"
}
