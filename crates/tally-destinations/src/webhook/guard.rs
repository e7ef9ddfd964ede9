//! Keeping webhooks off private networks (SSRF): a webhook URL is typed in by whoever
//! configures tally, and without this guard it could make tally post to the cloud metadata
//! service (`169.254.169.254`), an admin port on loopback or anything else inside the network.
//!
//! Two checks, both skipped when `allow_private_networks = true`:
//! - at build time, [`check_host`] refuses a URL whose host is a literal private address or a
//!   `localhost` name (RFC 6761 reserves those to loopback);
//! - at connect time, [`PublicResolver`] resolves every other name itself and refuses when
//!   **any** resolved address is private, so the address checked is the address connected to
//!   and a name that resolves to `127.0.0.1` (or is rebound to it later) never gets through.
//!   Redirects are not followed at all, so a public server cannot bounce tally inward.
//!
//! Refused ranges ([`is_public`] is false): unspecified (`0.0.0.0/8`, `::`), loopback, RFC 1918
//! private, link-local (`169.254/16`, `fe80::/10`), CGNAT (`100.64/10`), unique-local
//! (`fc00::/7`), deprecated site-local (`fec0::/10`), multicast, broadcast and the reserved
//! `240/4`, the IETF protocol block (`192.0.0/24`), benchmarking (`198.18/15`), documentation
//! (`192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`), discard-only `100::/64`,
//! local-use NAT64 `64:ff9b:1::/48`; and IPv6 forms that carry an IPv4 address (mapped,
//! compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address.

use std::error::Error;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The NeedsFix reason (and build error) for a refused target.
pub const REFUSED: &str =
    "target resolves to a private address; set allow_private_networks = true to allow";

/// Whether `ip` is an address a webhook may be sent to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19))
        || ip.is_multicast()
        || a >= 240;
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xff00) == 0xff00
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0])
        || (segments[0] == 0x0064 && segments[1] == 0xff9b && segments[2] == 0x0001);
    !refused
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        // `::` and `::1` land here too and map into 0.0.0.0/8, which is refused.
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

/// Refuses a URL whose host is a literal non-public address or a `localhost` name.
///
/// # Errors
/// [`REFUSED`] when the host is refused.
pub fn check_host(url: &Url) -> Result<(), &'static str> {
    let public = match url.host() {
        Some(Host::Ipv4(v4)) => is_public_v4(v4),
        Some(Host::Ipv6(v6)) => is_public_v6(v6),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
        None => true,
    };
    if public { Ok(()) } else { Err(REFUSED) }
}

/// A name whose resolution included a non-public address.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to a private address ({address})")]
pub struct PrivateTarget {
    host: String,
    address: IpAddr,
}

/// How [`PublicResolver`] looks a name up: the system resolver, or a test's own table.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// Resolves names (with the system resolver unless built [`PublicResolver::with_lookup`]) and
/// refuses any name with a non-public address among its answers.
#[derive(Clone, Default)]
pub struct PublicResolver {
    lookup: Option<Lookup>,
}

impl PublicResolver {
    /// A resolver that asks `lookup` instead of the system resolver, so a test can make a name
    /// resolve to whatever it needs (a private address, a mix) without touching DNS.
    pub fn with_lookup(lookup: Lookup) -> Self {
        PublicResolver {
            lookup: Some(lookup),
        }
    }
}

impl std::fmt::Debug for PublicResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.lookup.is_some() {
            "custom"
        } else {
            "system"
        };
        f.debug_struct("PublicResolver")
            .field("lookup", &how)
            .finish()
    }
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup {
                Some(lookup) => lookup(host.clone()).await?,
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            if let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(Box::new(PrivateTarget {
                    host,
                    address: private.ip(),
                }) as Box<dyn Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether a request failed because [`PublicResolver`] refused its target.
pub fn refused(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<PrivateTarget>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(ip: &str) -> bool {
        is_public(ip.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "64:ff9b:1::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
        ] {
            assert!(!public(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(public(ip), "{ip} should pass");
        }
    }

    #[test]
    fn literal_private_hosts_and_localhost_names_are_refused_at_build() {
        for url in [
            "http://localhost:8080/hook",
            "http://LOCALHOST./hook",
            "http://app.localhost/hook",
            "http://127.0.0.1/hook",
            "http://127.1/hook",
            "http://0x7f000001/hook",
            "http://[::1]/hook",
            "http://10.1.2.3/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:169.254.169.254]/",
        ] {
            assert_eq!(check_host(&Url::parse(url).unwrap()), Err(REFUSED), "{url}");
        }
        for url in ["https://hooks.example.com/tally", "https://8.8.8.8/x"] {
            assert_eq!(check_host(&Url::parse(url).unwrap()), Ok(()), "{url}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        let error = match PublicResolver::default()
            .resolve("localhost".parse().unwrap())
            .await
        {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(error.is::<PrivateTarget>(), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("localhost resolves to a private address")
        );
    }
}
