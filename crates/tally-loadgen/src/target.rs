//! Where requests go: the `--url` resolved once to a socket address, plus the request line and
//! headers that every request shares.
//!
//! Plain `http://` only; the collector is measured without TLS in front of it. The address is
//! resolved at start-up so reconnects never wait on DNS, and it must be loopback unless
//! `--allow-remote` is given, because a load generator pointed at the wrong host is an attack.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail, ensure};
use hyper::Uri;
use hyper::header::HeaderValue;

/// A resolved server and the fixed parts of every request sent to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Address every connection dials.
    pub addr: SocketAddr,
    /// Origin-form request target, e.g. `/v1/events`.
    pub path: Uri,
    /// `Host` header; hyper's low-level client connection does not add one itself.
    pub host: HeaderValue,
    /// `Authorization: Bearer …` header.
    pub authorization: HeaderValue,
}

impl Target {
    /// Parses `url`, resolves its host and builds the shared headers.
    ///
    /// # Errors
    ///
    /// When the URL is not `http://host[:port][/prefix]`, the host does not resolve, it
    /// resolves to a non-loopback address without `allow_remote`, or `key` is not a valid
    /// header value.
    pub async fn resolve(url: &str, key: &str, allow_remote: bool) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        ensure!(
            uri.scheme_str() == Some("http"),
            "--url must start with http:// (TLS is not supported)"
        );
        let authority = uri.authority().context("--url has no host")?;
        let port = authority.port_u16().unwrap_or(80);
        // `Uri` keeps IPv6 literals bracketed, which `lookup_host` does not accept.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolved to no address"))?;
        if !addr.ip().is_loopback() && !allow_remote {
            bail!("{addr} is not a loopback address; pass --allow-remote to target it anyway");
        }

        let prefix = uri.path().trim_end_matches('/');
        let path: Uri = format!("{prefix}/v1/events")
            .parse()
            .context("building request path")?;
        let host = HeaderValue::from_str(authority.as_str()).context("host header")?;
        let authorization = HeaderValue::from_str(&format!("Bearer {key}"))
            .context("--key contains characters not allowed in a header")?;
        Ok(Self {
            addr,
            path,
            host,
            authorization,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_events_path_under_url_prefix() {
        let t = Target::resolve("http://127.0.0.1:9/base/", "k", false)
            .await
            .unwrap();
        assert_eq!(t.path, "/base/v1/events");
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:9");
        assert_eq!(t.authorization, "Bearer k");
    }

    #[tokio::test]
    async fn refuses_non_loopback_without_opt_in() {
        let err = Target::resolve("http://192.0.2.1:80", "k", false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(
            Target::resolve("http://192.0.2.1:80", "k", true)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn refuses_https() {
        assert!(
            Target::resolve("https://127.0.0.1", "k", false)
                .await
                .is_err()
        );
    }
}
