//! TLS to PostgreSQL, asked for the way libpq users know: `sslmode` and `sslrootcert` in
//! `[store] url`. rustls does the TLS (`tokio-postgres-rustls` plugs it into tokio-postgres);
//! there is no OpenSSL in tally.
//!
//! tokio-postgres 0.7 parses only `sslmode=disable|prefer|require` and no `sslrootcert`, so
//! both are taken out of the URL here before it parses the rest, and interpreted:
//!
//! | `sslmode` | TLS | certificate chain | host name |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` (default) | when the server offers it | checked only with `sslrootcert` | no |
//! | `require` | always | checked only with `sslrootcert` (libpq: then as `verify-ca`) | no |
//! | `verify-ca` | always | against `sslrootcert` (required) | no |
//! | `verify-full` | always | against `sslrootcert`, else the built-in roots | yes |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system`: the built-in Mozilla roots
//! (`webpki-roots`, the ones the destinations' HTTPS client trusts too); as in libpq 16, `system`
//! implies `verify-full` and refuses a weaker mode.
//!
//! Invariants: a mode that asks for verification never connects without it (a CA file that
//! cannot be read, or holds no certificate, fails the open; it never falls back to no
//! verification); combinations that would not do what they say are refused at start
//! (`verify-ca` against public roots, which anyone's certificate chains to; TLS required over a
//! unix socket, where PostgreSQL has none; `sslrootcert` with `disable`). Messages name the
//! parameter and the file, never the URL (it may hold a password).

use std::borrow::Cow;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::{fmt, io};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, all of it but `allow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Mode, String> {
        Ok(match value {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (it tries without TLS first); \
                            use prefer or disable"
                        .to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    /// As written in a URL.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres does on the wire: whether TLS is attempted and whether it must be.
    fn wire(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// Which CA certificates the server's certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RootCert {
    /// A PEM file (`sslrootcert=/path/ca.pem`).
    File(PathBuf),
    /// The built-in Mozilla roots (`sslrootcert=system`).
    BuiltIn,
}

/// The TLS parameters a URL asked for, taken out of it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(super) struct Asked {
    /// `sslmode`, when the URL has one.
    mode: Option<Mode>,
    /// `sslrootcert`, when the URL has one.
    root_cert: Option<RootCert>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL (tokio-postgres refuses
/// `verify-ca`, `verify-full` and `sslrootcert`); returns the rest, for tokio-postgres to
/// parse, and what they asked for. A later parameter wins over an earlier one, as in libpq.
/// Strings that are not URLs (libpq's `key=value` form) are returned as they are: tokio-postgres
/// parses their `sslmode` itself and refuses the rest.
///
/// # Errors
/// A message (never the URL) when a value is unknown or not percent-decodable.
pub(super) fn split_url(url: &str) -> Result<(Cow<'_, str>, Asked), String> {
    let Some(after_scheme) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
    else {
        return Ok((Cow::Borrowed(url), Asked::default()));
    };
    // The same sloppy split tokio-postgres (and libpq) make: credentials run to the first
    // `@` (a password may hold a `?`), the parameters start at the first `?` after them.
    let authority = after_scheme.find('@').map_or(0, |at| at + 1);
    let Some(question) = after_scheme[authority..].find('?') else {
        return Ok((Cow::Borrowed(url), Asked::default()));
    };
    let query_start = url.len() - after_scheme.len() + authority + question;
    let (head, query) = (&url[..query_start], &url[query_start + 1..]);
    let mut asked = Asked::default();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(key)?.as_ref() {
            "sslmode" => asked.mode = Some(Mode::parse(&decode(value)?)?),
            "sslrootcert" => {
                let value = decode(value)?;
                asked.root_cert = Some(match value.as_ref() {
                    "" => return Err("sslrootcert is empty".to_owned()),
                    "system" => RootCert::BuiltIn,
                    path => RootCert::File(PathBuf::from(path)),
                });
            }
            _ => kept.push(pair),
        }
    }
    if kept.is_empty() {
        Ok((Cow::Owned(head.to_owned()), asked))
    } else {
        Ok((Cow::Owned(format!("{head}?{}", kept.join("&"))), asked))
    }
}

/// Percent-decoding as libpq does it (`+` stays `+`).
fn decode(s: &str) -> Result<Cow<'_, str>, String> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a parameter of store.url has a broken %-escape")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "a parameter of store.url is not UTF-8 once %-decoded".to_owned())
}

/// The mode in force: the URL's, else `verify-full` for `sslrootcert=system`, else what
/// tokio-postgres parsed (its default is `prefer`); refuses combinations that would not do
/// what they say. Reads nothing.
///
/// # Errors
/// A message (never the URL) saying what to change.
pub(super) fn mode(pg: &tokio_postgres::Config, asked: &Asked) -> Result<Mode, String> {
    let mode = match (asked.mode, &asked.root_cert) {
        (Some(m), _) => m,
        (None, Some(RootCert::BuiltIn)) => Mode::VerifyFull,
        (None, _) => match pg.get_ssl_mode() {
            SslMode::Disable => Mode::Disable,
            SslMode::Require => Mode::Require,
            _ => Mode::Prefer,
        },
    };
    match (&asked.root_cert, mode) {
        (Some(_), Mode::Disable) => {
            return Err(
                "sslrootcert is set but sslmode=disable turns TLS off: remove one of them".into(),
            );
        }
        (Some(RootCert::BuiltIn), m) if m < Mode::VerifyFull => {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full, not {}: public CAs sign \
                 certificates for anyone's host, so only the host name check makes them mean \
                 anything",
                m.as_str()
            ));
        }
        (None, Mode::VerifyCa) => {
            return Err(
                "sslmode=verify-ca needs sslrootcert=<CA file>: public CAs sign \
                        certificates for anyone's host, so without a CA of your own use \
                        verify-full (the host name is checked too)"
                    .into(),
            );
        }
        _ => {}
    }
    if mode >= Mode::Require {
        #[cfg(unix)]
        if let Some(Host::Unix(path)) = pg.get_hosts().iter().find(|h| matches!(h, Host::Unix(_))) {
            return Err(format!(
                "sslmode={} cannot be met over the unix socket {}: PostgreSQL has no TLS on \
                 unix sockets; connect over TCP, or use sslmode=prefer or disable",
                mode.as_str(),
                path.display()
            ));
        }
    }
    Ok(mode)
}

/// Checks the TLS parameters of a store URL without connecting or reading files (for
/// `tally config check`).
///
/// # Errors
/// A message that never echoes the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let (rest, asked) = split_url(url)?;
    let pg: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // tokio-postgres names the option, never its value.
        format!("does not parse: {e}")
    })?;
    mode(&pg, &asked).map(|_| ())
}

/// What checks the server's certificate.
enum Check {
    /// Nothing: the session is encrypted, the server not authenticated (`prefer` and
    /// `require` without `sslrootcert`, as in libpq).
    Nothing,
    /// The chain to a trusted CA, not the host name (`verify-ca`; `require` and `prefer`
    /// with `sslrootcert`).
    Chain(Arc<RootCertStore>),
    /// Chain and host name (`verify-full`).
    Full(Arc<WebPkiServerVerifier>),
}

/// Our certificate verifier: the check the mode asks for.
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let check = match self.check {
            Check::Nothing => "nothing",
            Check::Chain(_) => "chain",
            Check::Full(_) => "chain and host name",
        };
        f.debug_struct("Verifier").field("check", &check).finish()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let checked = match &self.check {
            Check::Nothing => Ok(()),
            Check::Chain(roots) => ParsedCertificate::try_from(end_entity).and_then(|cert| {
                verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    roots,
                    intermediates,
                    now,
                    self.provider.signature_verification_algorithms.all,
                )
            }),
            Check::Full(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ()),
        };
        checked.map(|()| ServerCertVerified::assertion())
    }

    // The handshake's signatures are checked in every mode, so the server at least holds the
    // key of the certificate it shows (what channel binding builds on).
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Reads the CA certificates of a PEM file.
fn read_roots(path: &std::path::Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| format!("sslrootcert {shown} is not valid PEM: {e}"))?;
        roots.add(cert).map_err(|e| {
            format!(
                "sslrootcert {shown}: certificate {} is unusable: {e}",
                i + 1
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert {shown} holds no certificate (PEM `-----BEGIN CERTIFICATE-----` blocks)"
        ));
    }
    Ok(roots)
}

/// The connector for `mode`: reads the CA file now, so a bad one fails the open.
///
/// # Errors
/// A message naming the file (unreadable, not PEM, no certificate).
pub(super) fn connector(mode: Mode, asked: &Asked) -> Result<(SslMode, Connector), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (roots, trusted) = match &asked.root_cert {
        Some(RootCert::File(path)) => (
            Some(read_roots(path)?),
            format!("sslrootcert {}", path.display()),
        ),
        Some(RootCert::BuiltIn) | None => (
            (mode == Mode::VerifyFull).then(|| RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            "the built-in roots (webpki-roots)".to_owned(),
        ),
    };
    let check = match (mode, roots) {
        (Mode::Disable, _) | (Mode::Prefer | Mode::Require, None) => Check::Nothing,
        // Never a verifying mode without its check (`mode` refuses this first).
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err(format!("sslmode={} needs sslrootcert", mode.as_str()));
        }
        (Mode::VerifyFull, Some(roots)) => Check::Full(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("the trusted CAs cannot be used: {e}"))?,
        ),
        (_, Some(roots)) => Check::Chain(Arc::new(roots)),
    };
    let verifier = Verifier {
        check,
        provider: provider.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What libpq 17 sends; PostgreSQL 17 needs it for `sslnegotiation=direct`, older servers
    // ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok((
        mode.wire(),
        Connector {
            inner: MakeRustlsConnect::new(config),
            trusted: trusted.into(),
        },
    ))
}

/// `tokio-postgres-rustls`'s connector, with handshake failures that say what was checked
/// against what: "the server's certificate for db.example does not verify against
/// sslrootcert /etc/tally/ca.pem: ..." rather than "invalid peer certificate: BadSignature".
#[derive(Clone)]
pub(super) struct Connector {
    inner: MakeRustlsConnect,
    /// What the chain is checked against, for messages.
    trusted: Arc<str>,
}

/// One connection's handshake (see [`Connector`]).
pub(super) struct Connect<T> {
    inner: T,
    host: String,
    trusted: Arc<str>,
}

impl<S> MakeTlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = Connect<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(Connect {
            inner: <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(
                &mut self.inner,
                host,
            )?,
            host: host.to_owned(),
            trusted: self.trusted.clone(),
        })
    }
}

impl<S, T> TlsConnect<S> for Connect<T>
where
    T: TlsConnect<S, Error = io::Error>,
    T::Future: Send + 'static,
{
    type Stream = T::Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<T::Stream>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let Connect {
            inner,
            host,
            trusted,
        } = self;
        let handshake = inner.connect(stream);
        Box::pin(async move { handshake.await.map_err(|e| explain(e, &host, &trusted)) })
    }
}

/// A refused certificate in words; any other handshake error as it is.
fn explain(e: io::Error, host: &str, trusted: &str) -> io::Error {
    let Some(rustls::Error::InvalidCertificate(cause)) =
        e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return e;
    };
    let text = match cause {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "the server's certificate is not valid for the host name {host} \
                 (sslmode=verify-full checks it): {cause}"
            )
        }
        // webpki finds no issuer by name (UnknownIssuer), or one by name whose key did not
        // sign it (BadSignature): either way not signed by a CA we trust.
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the server's certificate for {host} does not verify against {trusted}: \
             not signed by a trusted CA ({cause:?})"
        ),
        cause => format!(
            "the server's certificate for {host} does not verify against {trusted}: {cause}"
        ),
    };
    io::Error::new(io::ErrorKind::InvalidData, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pw-secret-1234";

    fn split(url: &str) -> (String, Asked) {
        let (rest, asked) = split_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (rest.into_owned(), asked)
    }

    fn mode_of(url: &str) -> Result<Mode, String> {
        let (rest, asked) = split_url(url)?;
        let pg: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
        mode(&pg, &asked)
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_and_every_other_parameter_is_kept() {
        let (rest, asked) = split(
            "postgres://tally:pw@db.example:5432/tally?application_name=a&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Ftally%2Fca%20file.pem&connect_timeout=3",
        );
        assert_eq!(
            rest,
            "postgres://tally:pw@db.example:5432/tally?application_name=a&connect_timeout=3"
        );
        assert_eq!(asked.mode, Some(Mode::VerifyFull));
        assert_eq!(
            asked.root_cert,
            Some(RootCert::File("/etc/tally/ca file.pem".into()))
        );

        let (rest, asked) = split("postgresql://db/x?sslmode=require");
        assert_eq!(rest, "postgresql://db/x");
        assert_eq!(asked.mode, Some(Mode::Require));

        // Nothing to take: the URL stays as it is.
        let url = "postgres://tally@db/x?connect_timeout=3";
        assert_eq!(split(url), (url.to_owned(), Asked::default()));
        assert_eq!(split("postgres://db/x").0, "postgres://db/x");
        // Not a URL: tokio-postgres parses it alone.
        assert_eq!(
            split("host=db sslmode=require").0,
            "host=db sslmode=require"
        );
    }

    #[test]
    fn a_question_mark_in_the_password_does_not_start_the_parameters() {
        let (rest, asked) = split("postgres://tally:a?b=c@db/x?sslmode=disable");
        assert_eq!(rest, "postgres://tally:a?b=c@db/x");
        assert_eq!(asked.mode, Some(Mode::Disable));
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&b"a?b=c"[..]));
    }

    #[test]
    fn the_last_sslmode_wins_as_in_libpq() {
        // So `${DATABASE_URL}&sslmode=verify-full` tightens a provider's `?sslmode=require`.
        let (_, asked) = split("postgres://db/x?sslmode=require&sslmode=verify-full");
        assert_eq!(asked.mode, Some(Mode::VerifyFull));
    }

    #[test]
    fn each_mode_means_what_libpq_means() {
        assert_eq!(mode_of("postgres://db/x"), Ok(Mode::Prefer));
        assert_eq!(
            mode_of("postgres://db/x?sslmode=disable"),
            Ok(Mode::Disable)
        );
        assert_eq!(
            mode_of("postgres://db/x?sslmode=require"),
            Ok(Mode::Require)
        );
        assert_eq!(
            mode_of("postgres://db/x?sslmode=verify-full"),
            Ok(Mode::VerifyFull)
        );
        assert_eq!(
            mode_of("postgres://db/x?sslmode=verify-ca&sslrootcert=/ca.pem"),
            Ok(Mode::VerifyCa)
        );
        // sslrootcert=system implies verify-full (libpq 16).
        assert_eq!(
            mode_of("postgres://db/x?sslrootcert=system"),
            Ok(Mode::VerifyFull)
        );
        // The key=value form keeps tokio-postgres's own parsing.
        assert_eq!(mode_of("host=db sslmode=require"), Ok(Mode::Require));
        assert_eq!(Mode::VerifyCa.wire(), SslMode::Require);
        assert_eq!(Mode::Prefer.wire(), SslMode::Prefer);
    }

    #[test]
    fn combinations_that_would_not_do_what_they_say_are_refused_without_the_password() {
        for (url, says) in [
            (
                "postgres://u:{pw}@db/x?sslmode=verify_full",
                "is not one of",
            ),
            ("postgres://u:{pw}@db/x?sslmode=allow", "not supported"),
            (
                "postgres://u:{pw}@db/x?sslmode=verify-ca",
                "needs sslrootcert",
            ),
            (
                "postgres://u:{pw}@db/x?sslmode=require&sslrootcert=system",
                "needs sslmode=verify-full",
            ),
            (
                "postgres://u:{pw}@db/x?sslmode=disable&sslrootcert=/ca.pem",
                "turns TLS off",
            ),
            ("postgres://u:{pw}@db/x?sslrootcert=", "is empty"),
            ("postgres://u:{pw}@db/x?sslrootcert=%zz", "%-escape"),
            (
                "postgres://u:{pw}@%2Frun%2Fpostgresql/x?sslmode=require",
                "unix socket /run/postgresql",
            ),
        ] {
            let url = url.replace("{pw}", SECRET);
            let err = mode_of(&url).expect_err(&url);
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains(SECRET), "{err}");
            assert_eq!(check_url(&url), Err(err));
        }
        // Over a unix socket, prefer falls back to plain as everywhere.
        assert_eq!(
            mode_of("postgres://u@%2Frun%2Fpostgresql/x"),
            Ok(Mode::Prefer)
        );
        assert!(check_url("postgres://u@db/x?sslcert=/c.pem").is_err());
    }

    #[test]
    fn a_ca_file_that_cannot_be_used_fails_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let asked = |path: &std::path::Path| Asked {
            mode: Some(Mode::VerifyFull),
            root_cert: Some(RootCert::File(path.to_owned())),
        };
        let missing = dir.path().join("missing.pem");
        let err = connector(Mode::VerifyFull, &asked(&missing)).err().unwrap();
        assert!(
            err.starts_with(&format!("cannot read sslrootcert {}", missing.display())),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = connector(Mode::VerifyFull, &asked(&empty)).err().unwrap();
        assert!(err.contains("holds no certificate"), "{err}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = connector(Mode::VerifyFull, &asked(&broken)).err().unwrap();
        assert!(err.contains("is unusable"), "{err}");
        // verify-full without sslrootcert uses the built-in roots; no file needed.
        assert!(connector(Mode::VerifyFull, &Asked::default()).is_ok());
        assert!(connector(Mode::VerifyCa, &Asked::default()).is_err());
        assert!(connector(Mode::Prefer, &Asked::default()).is_ok());
    }
}
