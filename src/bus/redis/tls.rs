//! TLS to Redis (the cargo feature `tls`): rustls on the ring provider,
//! driven without blocking over the connection's mio socket. [`Tls`] is
//! how a node's connections make their sessions (the trusted CAs, the
//! name each address's certificate must carry); the functions below are
//! what [`Link`](super::link::Link) does with a session: shake hands,
//! read and write plaintext, send the records waiting.
//!
//! The CAs are the public ones (webpki-roots, what managed Redis services'
//! certificates chain to) or, with `--redis-ca FILE`, only those in that
//! PEM file (a private CA). A server is checked against the host the URL
//! names it by (a name or an IP address); a server only a Sentinel names
//! is checked against the address the Sentinel gave.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;

use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// How a node's TLS sessions are made.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    /// The hosts the URL names, by the address each resolved to.
    names: Arc<[(SocketAddr, ServerName<'static>)]>,
}

impl Tls {
    /// Sessions that trust the CAs in the PEM file `ca` (else the public
    /// CAs) and check the server at each address of `names` against its
    /// host, any other against its IP address. The error names what is
    /// wrong with the file or a host.
    pub fn new(ca: Option<&Path>, names: &[(SocketAddr, &str)]) -> io::Result<Tls> {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                let invalid = |why: String| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: {why}", path.display()),
                    )
                };
                let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| invalid(format!("not PEM: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("a certificate not taken: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(invalid("holds no CERTIFICATE".into()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // Deprecated since rustls 0.23.48 for offering no post-quantum key
        // exchange (aws-lc-rs does, but needs cmake to build); X25519 and
        // the NIST curves are what Redis's OpenSSL offers anyway.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let names = names
            .iter()
            .map(|&(addr, host)| {
                ServerName::try_from(host.to_owned())
                    .map(|name| (addr, name))
                    .map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}"))
                    })
            })
            .collect::<io::Result<_>>()?;
        Ok(Tls {
            config: Arc::new(config),
            names,
        })
    }

    /// A new session with the server at `addr`.
    pub fn session(&self, addr: SocketAddr) -> io::Result<ClientConnection> {
        let name = self
            .names
            .iter()
            .find(|(a, _)| *a == addr)
            .map_or_else(|| ServerName::from(addr.ip()), |(_, name)| name.clone());
        ClientConnection::new(Arc::clone(&self.config), name).map_err(io::Error::other)
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Goes on with the handshake until it is done (`Ok(true)`) or waits for
/// the socket (`Ok(false)`).
pub fn handshake(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<bool> {
    loop {
        // Out first: the ClientHello, at the end the client's Finished.
        send_pending(tls, tcp)?;
        if !tls.is_handshaking() {
            return Ok(true);
        }
        match tls.read_tls(tcp) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the TLS handshake",
                ));
            }
            Ok(_) => process(tls, tcp)?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Plaintext read: what the session holds, else what the socket brings.
/// `Ok(0)` is the end, with or without the server's `close_notify`.
pub fn read(tls: &mut ClientConnection, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // TCP closed without close_notify: Redis closes so.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        match tls.read_tls(tcp) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                process(tls, tcp)?;
                // What the records asked to answer (a key update).
                send_pending(tls, tcp)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Plaintext written: taken by the session (as much as its buffer holds),
/// then sent as far as the socket takes it. `WouldBlock` when the
/// session's buffer is full.
pub fn write(tls: &mut ClientConnection, tcp: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
    send_pending(tls, tcp)?;
    let n = tls.writer().write(buf)?;
    send_pending(tls, tcp)?;
    if n == 0 && !buf.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}

/// Writes the records waiting until none is left or the kernel takes no
/// more (not an error: the next writable readiness goes on).
pub fn send_pending(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The records read, decrypted; a failure (a certificate refused, a
/// broken record) is sent to the server as an alert and returned.
fn process(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    if let Err(e) = tls.process_new_packets() {
        let _ = tls.write_tls(tcp);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    Ok(())
}
