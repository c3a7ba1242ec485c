//! The socket of one Redis connection: plain TCP, or, built with the cargo
//! feature `tls` and given a [`Tls`], a TLS session over it. Either way a
//! non-blocking `Read` and `Write` of the plaintext and a `mio` source, so
//! that `conn` reads and writes one as the other; what TLS adds is a
//! handshake after the connect ([`Link::handshake`]) and records that wait
//! to go out after a write was taken ([`Link::send_pending`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// How TLS connections are made: the trusted CAs and the name each
/// address's certificate must carry. Without the feature `tls` there is
/// none to be had (no URL asks for TLS).
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub enum Tls {}

#[cfg(feature = "tls")]
pub use super::tls::Tls;

/// A connection's socket.
pub struct Link {
    tcp: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Link {
    /// Begins a non-blocking connect to `addr`, over TLS with `tls`.
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    pub fn connect(addr: SocketAddr, tls: Option<&Tls>) -> io::Result<Link> {
        #[cfg(feature = "tls")]
        let tls = match tls {
            Some(tls) => Some(Box::new(tls.session(addr)?)),
            None => None,
        };
        Ok(Link {
            tcp: TcpStream::connect(addr)?,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Once TCP is connected: goes on with the TLS handshake as far as
    /// the socket allows. `Ok(true)` once there is nothing left to shake
    /// (always, without TLS); an error is a failed handshake (a
    /// certificate not trusted, or for another name).
    #[inline]
    pub fn handshake(&mut self) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return super::tls::handshake(tls, &mut self.tcp);
        }
        Ok(true)
    }

    /// Writes the TLS records a write took but the kernel did not, as far
    /// as it takes them now (nothing to do without TLS).
    #[inline]
    pub fn send_pending(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return super::tls::send_pending(tls, &mut self.tcp);
        }
        Ok(())
    }
}

impl Read for Link {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return super::tls::read(tls, &mut self.tcp, buf);
        }
        self.tcp.read(buf)
    }
}

impl Write for Link {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return super::tls::write(tls, &mut self.tcp, buf);
        }
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}

impl mio::event::Source for Link {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp.deregister(registry)
    }
}
