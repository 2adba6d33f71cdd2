//! The PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`), version 1 (a text line) or
//! 2 (binary), that tells a backend the client's address and the address it connected to.
//! Pure: the bytes for two socket addresses.

use crate::model::ProxyProtocol;
use std::net::SocketAddr;

/// Version 2's fixed signature.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The header for a TCP connection from `client` to `proxy` (the address it reached us on).
/// Addresses of two families (an IPv4 client on an IPv6 socket is seen as IPv4-mapped and is
/// said as IPv6) cannot be told in one header: then `UNKNOWN` (v1) or `LOCAL` (v2), which a
/// backend reads as "use the connection's own addresses".
pub fn header(version: ProxyProtocol, client: SocketAddr, proxy: SocketAddr) -> Vec<u8> {
    match version {
        ProxyProtocol::V1 => v1(client, proxy),
        ProxyProtocol::V2 => v2(client, proxy),
    }
}

fn v1(client: SocketAddr, proxy: SocketAddr) -> Vec<u8> {
    let family = match (client, proxy) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => "TCP4",
        (SocketAddr::V6(_), SocketAddr::V6(_)) => "TCP6",
        _ => return b"PROXY UNKNOWN\r\n".to_vec(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        proxy.ip(),
        client.port(),
        proxy.port()
    )
    .into_bytes()
}

fn v2(client: SocketAddr, proxy: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    match (client, proxy) {
        (SocketAddr::V4(c), SocketAddr::V4(p)) => {
            // Version 2, PROXY; TCP over IPv4; 12 bytes of addresses.
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&p.ip().octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&p.port().to_be_bytes());
        }
        (SocketAddr::V6(c), SocketAddr::V6(p)) => {
            // TCP over IPv6; 36 bytes.
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&p.ip().octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&p.port().to_be_bytes());
        }
        // Version 2, LOCAL; unspecified family; no addresses.
        _ => out.extend_from_slice(&[0x20, 0x00, 0, 0]),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_is_the_text_line_of_the_spec() {
        let c: SocketAddr = "192.168.0.1:56324".parse().unwrap();
        let p: SocketAddr = "192.168.0.11:443".parse().unwrap();
        // The example of proxy-protocol.txt section 2.1.
        assert_eq!(
            header(ProxyProtocol::V1, c, p),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
        let c6: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let p6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(
            header(ProxyProtocol::V1, c6, p6),
            b"PROXY TCP6 2001:db8::1 ::1 40000 80\r\n"
        );
        assert_eq!(header(ProxyProtocol::V1, c, p6), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn version_2_is_the_binary_block_of_the_spec() {
        let c: SocketAddr = "10.0.0.1:1234".parse().unwrap();
        let p: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let h = header(ProxyProtocol::V2, c, p);
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert_eq!(&h[20..24], &[10, 0, 0, 2]);
        assert_eq!(&h[24..28], &[0x04, 0xD2, 0, 80]);
        assert_eq!(h.len(), 28);
        let c6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let p6: SocketAddr = "[2001:db8::2]:2".parse().unwrap();
        let h6 = header(ProxyProtocol::V2, c6, p6);
        assert_eq!(&h6[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h6.len(), 16 + 36);
        assert_eq!(&header(ProxyProtocol::V2, c, p6)[12..], &[0x20, 0, 0, 0]);
    }
}
