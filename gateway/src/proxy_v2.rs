//! The PROXY protocol version 2 header (HAProxy's `proxy-protocol.txt`, section 2.2) that a
//! TCP route with `proxy_protocol` sends first, so the service learns the public client's
//! address: the 12-byte signature, version 2 + command `PROXY`, `TCP over IPv4` or `TCP over
//! IPv6`, the address length, then source and destination addresses and ports, big-endian.
//! A mixed pair (IPv4 client, IPv6 listener or the reverse) is sent as IPv6, the IPv4 side
//! mapped (`::ffff:a.b.c.d`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The fixed signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command `PROXY`.
const VERSION_PROXY: u8 = 0x21;
/// `AF_INET` + `STREAM`.
const TCP4: u8 = 0x11;
/// `AF_INET6` + `STREAM`.
const TCP6: u8 = 0x21;

/// The header for a connection from `source` (the public client) to `destination` (the
/// gateway's listening address).
pub fn header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_PROXY);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(TCP4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(TCP6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// Why bytes are not a v2 `PROXY` header over TCP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// Fewer bytes than the header needs.
    #[error("PROXY v2 header truncated: {0} bytes")]
    Truncated(usize),
    /// The signature, version, command or family is not one this parser reads.
    #[error("not a PROXY v2 TCP header")]
    Invalid,
}

/// Parses a header made by [`header`]: `(source, destination, bytes used)`.
pub fn parse(bytes: &[u8]) -> Result<(SocketAddr, SocketAddr, usize), ProxyHeaderError> {
    let fixed: [u8; 16] = bytes
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or(ProxyHeaderError::Truncated(bytes.len()))?;
    if fixed.get(..12) != Some(&SIGNATURE[..]) || fixed[12] != VERSION_PROXY {
        return Err(ProxyHeaderError::Invalid);
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let body = bytes
        .get(16..16 + len)
        .ok_or(ProxyHeaderError::Truncated(bytes.len()))?;
    let port = |at: usize| -> Result<u16, ProxyHeaderError> {
        body.get(at..at + 2)
            .and_then(|p| p.try_into().ok())
            .map(u16::from_be_bytes)
            .ok_or(ProxyHeaderError::Invalid)
    };
    let (source, destination) = match (fixed[13], len) {
        (TCP4, 12..) => {
            let ip = |at: usize| -> Result<IpAddr, ProxyHeaderError> {
                let o: [u8; 4] = body
                    .get(at..at + 4)
                    .and_then(|o| o.try_into().ok())
                    .ok_or(ProxyHeaderError::Invalid)?;
                Ok(IpAddr::from(o))
            };
            (
                SocketAddr::new(ip(0)?, port(8)?),
                SocketAddr::new(ip(4)?, port(10)?),
            )
        }
        (TCP6, 36..) => {
            let ip = |at: usize| -> Result<IpAddr, ProxyHeaderError> {
                let o: [u8; 16] = body
                    .get(at..at + 16)
                    .and_then(|o| o.try_into().ok())
                    .ok_or(ProxyHeaderError::Invalid)?;
                Ok(IpAddr::from(o))
            };
            (
                SocketAddr::new(ip(0)?, port(32)?),
                SocketAddr::new(ip(16)?, port(34)?),
            )
        }
        _ => return Err(ProxyHeaderError::Invalid),
    };
    Ok((source, destination, 16 + len))
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn an_ipv4_header_has_the_layout_of_the_spec_and_parses_back() {
        let s: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let d: SocketAddr = "198.51.100.2:5432".parse().unwrap();
        let h = header(s, d);
        assert_eq!(h.len(), 28);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[192, 0, 2, 1]);
        assert_eq!(&h[24..26], &40000u16.to_be_bytes());
        assert_eq!(parse(&h).unwrap(), (s, d, 28));
    }

    #[test]
    fn ipv6_and_mixed_pairs_are_sent_as_ipv6() {
        let s: SocketAddr = "[2001:db8::1]:1234".parse().unwrap();
        let d: SocketAddr = "192.0.2.9:80".parse().unwrap();
        let h = header(s, d);
        assert_eq!(h.len(), 52);
        assert_eq!(h[13], 0x21);
        let (ps, pd, used) = parse(&h).unwrap();
        assert_eq!((ps, used), (s, 52));
        assert_eq!(pd.ip(), IpAddr::V6("::ffff:192.0.2.9".parse().unwrap()));
        assert!(matches!(
            parse(&h[..20]),
            Err(ProxyHeaderError::Truncated(20))
        ));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(ProxyHeaderError::Invalid)
        );
    }
}
