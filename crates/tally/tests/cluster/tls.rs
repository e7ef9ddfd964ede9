//! The PostgreSQL store over TLS, against a private cluster with `ssl = on` that takes TCP
//! connections only as `hostssl` with a password (SCRAM), and a test CA made here (rcgen):
//! its server certificate is for `db.test`, and URLs reach it with `hostaddr=127.0.0.1`, so
//! host names are checked without DNS. A second CA with the same name but another key plays
//! the impostor.
//!
//! What is checked: `verify-full` with the right CA connects, with channel binding, and the
//! server sees the store's own sessions encrypted (`pg_stat_ssl`), in this process and in a
//! `tally serve` taking events; a wrong CA (under `verify-full`, `require` and `prefer`), a
//! host name the certificate does not name, an unreadable CA file and `sslmode=disable` are
//! refused at start with a message saying why and never the password, in this process and
//! from `tally migrate`; a server without TLS is refused when TLS is required.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::support::{
    ADMIN_TOKEN, Node, PrivatePostgres, batch, client, post_events, statuses, tally_bin,
};

const PASSWORD: &str = "pw-tls-secret-4821";
/// The name in the server's certificate.
const SERVER_NAME: &str = "db.test";

/// A private cluster that speaks TLS only, and the CA files to reach it with.
struct TlsPostgres {
    pg: PrivatePostgres,
    files: TempDir,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// Another CA, with the same name.
    wrong_ca: PathBuf,
}

/// A CA: its certificate (PEM) and what signs with it.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

impl TlsPostgres {
    fn start(test: &str) -> Option<TlsPostgres> {
        let files = tempfile::tempdir().expect("temp dir");
        let (ca_pem, issuer) = ca("tally test CA");
        let (wrong_pem, _) = ca("tally test CA");
        let mut params =
            CertificateParams::new(vec![SERVER_NAME.to_owned()]).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let ca = files.path().join("ca.pem");
        let wrong_ca = files.path().join("wrong-ca.pem");
        std::fs::write(&ca, ca_pem).expect("write the CA");
        std::fs::write(&wrong_ca, wrong_pem).expect("write the other CA");

        let pg = PrivatePostgres::start_with(test, |pg| {
            pg.write_data_file("server.crt", &cert.pem(), false);
            pg.write_data_file("server.key", &key.serialize_pem(), false);
            pg.write_data_file(
                "postgresql.conf",
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                true,
            );
            // TCP only with TLS and a password; the unix socket stays open to the tests.
            pg.write_data_file(
                "pg_hba.conf",
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all ::1/128 scram-sha-256\n",
                false,
            );
        })?;
        let tls = TlsPostgres {
            pg,
            files,
            ca,
            wrong_ca,
        };
        tls.admin(&format!("ALTER ROLE postgres PASSWORD '{PASSWORD}'"));
        Some(tls)
    }

    /// A store URL naming `host` (the TLS name; the connection goes to 127.0.0.1) with `params`.
    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?hostaddr=127.0.0.1&{params}",
            self.pg.port()
        )
    }

    /// Runs SQL as the superuser over the unix socket; the rows as text.
    fn admin(&self, sql: &str) -> Vec<Vec<String>> {
        runtime().block_on(async {
            let (client, connection) =
                tokio_postgres::connect(&self.pg.socket_conninfo(), tokio_postgres::NoTls)
                    .await
                    .expect("socket connection");
            tokio::spawn(connection);
            client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).unwrap_or("").to_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        })
    }

    /// How the server sees the sessions of `application_name`: (sessions, all encrypted,
    /// TLS versions).
    fn sessions(&self, application: &str) -> (usize, bool, String) {
        let rows = self.admin(&format!(
            "SELECT count(*), coalesce(bool_and(s.ssl), false), \
                    coalesce(string_agg(DISTINCT s.version, ','), '') \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = '{application}'"
        ));
        let row = &rows[0];
        (
            row[0].parse().expect("count"),
            row[1] == "t",
            row[2].clone(),
        )
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The config of a node (or of `tally migrate`) on `url`.
fn config(dir: &Path, url: &str) -> String {
    format!(
        r#"data_dir = "{data}"
admin_token = "{ADMIN_TOKEN}"
workers = 2

[log]
level = "warn"

[store]
kind = "postgres"
url = "{url}"
pool_size = 4
committers = 2
connect_timeout_ms = 5000
"#,
        data = dir.join("data").display()
    )
}

/// Opens the store the way `tally serve` does and closes it again: `Err` is the whole message
/// an operator would read.
fn open(dir: &Path, url: &str) -> Result<(), String> {
    let config = tally::config::load_from(
        Some(("tls.toml", &config(dir, url))),
        &Default::default(),
        &tally::config::Overrides::default(),
    )
    .map_err(|e| format!("config: {e}"))?;
    runtime().block_on(async {
        match tally::app::open_store(&config).await {
            Ok(store) => {
                store.ready().await.map_err(|e| format!("ready: {e}"))?;
                Ok(())
            }
            Err(e) => Err(format!("{e:#}")),
        }
    })
}

/// `open` must fail with a message containing every one of `says`, and not the password.
fn assert_refused(dir: &Path, url: &str, says: &[&str]) -> String {
    let err = match open(dir, url) {
        Ok(()) => panic!("{url} was accepted"),
        Err(e) => e,
    };
    for s in says {
        assert!(err.contains(s), "{url}: expected `{s}` in: {err}");
    }
    assert!(!err.contains(PASSWORD), "the password is in: {err}");
    err
}

#[test]
fn verify_full_with_the_right_ca_reaches_a_tls_only_server_encrypted_with_channel_binding() {
    let test = "verify_full_with_the_right_ca_reaches_a_tls_only_server";
    let Some(tls) = TlsPostgres::start(test) else {
        return;
    };
    let dir = tls.files.path();
    let ca = tls.ca.display();

    // In this process: the store's own connections, as the server sees them. Channel binding
    // required: the password exchange is bound to this TLS session (SCRAM-SHA-256-PLUS).
    let url = tls.url(
        SERVER_NAME,
        &format!(
            "sslmode=verify-full&sslrootcert={ca}&channel_binding=require\
             &application_name=tally_tls_full"
        ),
    );
    let loaded = tally::config::load_from(
        Some(("tls.toml", &config(dir, &url))),
        &Default::default(),
        &tally::config::Overrides::default(),
    )
    .expect("config");
    let rt = runtime();
    let store = rt.block_on(async {
        let store = tally::app::open_store(&loaded)
            .await
            .expect("open over TLS");
        store.ready().await.expect("ready");
        store
    });
    let (sessions, encrypted, versions) = tls.sessions("tally_tls_full");
    assert!(sessions >= 1, "no session of the store's pool is open");
    assert!(encrypted, "a session of the store is not encrypted");
    assert!(versions.starts_with("TLSv1."), "{versions}");
    rt.block_on(store.close());

    // sslrootcert=system means the built-in public roots, which never signed our test CA.
    assert_refused(
        dir,
        &tls.url(SERVER_NAME, "sslrootcert=system"),
        &["the built-in roots", "not signed by a trusted CA"],
    );
    // require without a CA: encrypted, nobody verified (libpq's meaning), so any CA passes.
    open(dir, &tls.url("other.test", "sslmode=require")).expect("require without a CA");
    // verify-ca checks the chain, not the host name.
    open(
        dir,
        &tls.url("other.test", &format!("sslmode=verify-ca&sslrootcert={ca}")),
    )
    .expect("verify-ca with another host name");

    // A real node on verify-full takes events into the TLS-only database.
    let node_url = tls.url(
        SERVER_NAME,
        &format!("sslmode=verify-full&sslrootcert={ca}&application_name=tally_tls_node"),
    );
    let node = Node::start(dir, "node", &config(dir, &node_url));
    let client = client();
    let ids: Vec<String> = (0..5).map(|i| format!("tls-{i}")).collect();
    let (status, body) = post_events(&client, &node.url, &batch(&ids)).expect("answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(statuses(&body), vec!["accepted"; 5], "{body}");
    let (sessions, encrypted, _) = tls.sessions("tally_tls_node");
    assert!(
        sessions >= 1 && encrypted,
        "the node's sessions: {sessions}"
    );
    let stored = tls.admin("SELECT count(*) FROM events WHERE event_id LIKE 'tls-%'");
    assert_eq!(stored[0][0], "5");
    drop(node);
}

#[test]
fn a_wrong_ca_a_wrong_host_name_an_unreadable_ca_file_or_no_tls_is_refused_at_start() {
    let test = "a_wrong_ca_a_wrong_host_name_an_unreadable_ca_file_or_no_tls_is_refused";
    let Some(tls) = TlsPostgres::start(test) else {
        return;
    };
    let dir = tls.files.path();
    let (ca, wrong) = (tls.ca.display(), tls.wrong_ca.display());

    let refused_ca =
        format!("certificate for {SERVER_NAME} does not verify against sslrootcert {wrong}");
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        // require and prefer check the chain once a CA is given, as libpq does.
        assert_refused(
            dir,
            &tls.url(SERVER_NAME, &format!("sslmode={mode}&sslrootcert={wrong}")),
            &[
                "error performing TLS handshake",
                &refused_ca,
                "not signed by a trusted CA",
                &format!("postgres://postgres@{SERVER_NAME}:"),
            ],
        );
    }
    assert_refused(
        dir,
        &tls.url(
            "other.test",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &["not valid for the host name other.test"],
    );
    let missing = dir.join("no-such-ca.pem");
    assert_refused(
        dir,
        &tls.url(
            SERVER_NAME,
            &format!("sslmode=verify-full&sslrootcert={}", missing.display()),
        ),
        &[&format!("cannot read sslrootcert {}", missing.display())],
    );
    // The server takes TCP only with TLS: without it, it says so itself.
    assert_refused(
        dir,
        &tls.url(SERVER_NAME, "sslmode=disable"),
        &["no pg_hba.conf entry", "no encryption"],
    );

    // The operator's view: `tally migrate` exits non-zero with the reason on stderr.
    let config_path = dir.join("wrong.toml");
    std::fs::write(
        &config_path,
        config(
            dir,
            &tls.url(
                SERVER_NAME,
                &format!("sslmode=verify-full&sslrootcert={wrong}"),
            ),
        ),
    )
    .expect("config");
    let out = Command::new(tally_bin())
        .arg("--config")
        .arg(&config_path)
        .arg("migrate")
        .env_remove("TALLY_CONFIG")
        .output()
        .expect("run tally migrate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "migrate succeeded: {stderr}");
    assert!(stderr.contains(&refused_ca), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[test]
fn tls_required_against_a_server_without_tls_is_refused_and_prefer_goes_plain() {
    let test = "tls_required_against_a_server_without_tls_is_refused";
    let Some(pg) = PrivatePostgres::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = |params: &str| format!("{}?{params}", pg.url());
    for mode in ["require", "verify-full"] {
        let err = match open(dir.path(), &url(&format!("sslmode={mode}"))) {
            Ok(()) => panic!("sslmode={mode} connected without TLS"),
            Err(e) => e,
        };
        assert!(err.contains("server does not support TLS"), "{err}");
        assert!(err.contains(&format!("sslmode={mode}")), "{err}");
    }
    open(dir.path(), &url("sslmode=prefer")).expect("prefer falls back to plain");
}
