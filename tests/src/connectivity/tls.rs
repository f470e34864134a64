//! TLS: lock, extend and unlock through `rediss://` with the test's own CA, the NOSCRIPT
//! fallback, mutual TLS, and clear failures for the wrong CA or a plain URL.

use std::time::Duration;

use redlock_core::{Pool, Redlock, Tls};

use super::{TlsFactory, options};
use crate::Factory;
use crate::fleet::{Fleet, TlsMaterial, unique_prefix};
use crate::printed;

/// Generous: a hang must turn into a failure, never pass.
const PATIENCE: Duration = Duration::from_secs(20);

fn material(fleet: &Fleet) -> &TlsMaterial {
    fleet.tls_material().expect("a TLS fleet")
}

fn trusting(fleet: &Fleet) -> Tls {
    Tls::new().root_ca_pem(material(fleet).ca_pem.clone())
}

fn over_tls<P: Pool>(fleet: &Fleet, tls: &Tls, factory: &impl TlsFactory<P>) -> Redlock<P> {
    let pools = (0..fleet.len())
        .map(|i| {
            let url = fleet.tls_url(i).expect("tls url");
            factory(&url, tls).unwrap_or_else(|e| panic!("factory failed for {url}: {e}"))
        })
        .collect();
    Redlock::with_options(pools, options(2)).expect("options")
}

fn start(n: usize, client_certs: bool) -> Fleet {
    Fleet::start_tls(n, client_certs).unwrap_or_else(|e| panic!("cannot start a TLS fleet: {e}"))
}

/// Lock, extend and unlock through TLS on three nodes, trusting the test's CA.
pub async fn tls_locks_extends_and_unlocks<P: Pool>(factory: &impl TlsFactory<P>) {
    let fleet = start(3, false);
    let redlock = over_tls(&fleet, &trusting(&fleet), factory);
    let name = unique_prefix("tls");
    let mut guard = redlock.lock(&name).await.expect("lock over TLS");
    for i in 0..3 {
        assert_eq!(
            fleet.get(i, &name).expect("get").as_deref(),
            Some(guard.value())
        );
    }
    guard.extend().await.expect("extend over TLS");
    guard.unlock().await.expect("unlock over TLS");
    for i in 0..3 {
        assert_eq!(fleet.get(i, &name).expect("get"), None);
    }
}

/// After the servers forget the scripts, the NOSCRIPT fallback (EVAL) works through TLS.
pub async fn tls_falls_back_to_eval_after_a_script_flush<P: Pool>(factory: &impl TlsFactory<P>) {
    let fleet = start(3, false);
    let redlock = over_tls(&fleet, &trusting(&fleet), factory);
    let name = unique_prefix("tls_noscript");
    redlock
        .lock(&name)
        .await
        .expect("lock")
        .unlock()
        .await
        .expect("unlock");
    for i in 0..3 {
        fleet.flush_scripts(i).expect("flush");
        fleet.reset_stats(i).expect("reset stats");
    }
    let guard = redlock.lock(&name).await.expect("lock after a flush");
    guard.unlock().await.expect("unlock");
    for i in 0..3 {
        let evals = fleet.command_count(i, "eval").expect("stats");
        assert_eq!(evals, 2, "one EVAL per script (lock, unlock) on node {i}");
    }
}

/// A server that requires client certificates takes the lock from a client that presents
/// one, and refuses one that does not, at once.
pub async fn mutual_tls_presents_the_client_certificate<P: Pool>(factory: &impl TlsFactory<P>) {
    let fleet = start(3, true);
    let m = material(&fleet);
    let with_cert =
        trusting(&fleet).client_cert_pem(m.client_cert_pem.clone(), m.client_key_pem.clone());
    let name = unique_prefix("mtls");
    let guard = over_tls(&fleet, &with_cert, factory)
        .lock(&name)
        .await
        .expect("lock with a client certificate");
    guard.unlock().await.expect("unlock");
    let without = over_tls(&fleet, &trusting(&fleet), factory);
    let refused = tokio::time::timeout(PATIENCE, without.lock(&name))
        .await
        .expect("no hang")
        .expect_err("no client certificate");
    assert!(refused.is_no_quorum() && !refused.is_taken(), "{refused}");
}

/// Trusting a CA that did not sign the servers' certificates fails at once, and the error
/// chain says it is the certificate.
pub async fn wrong_ca_fails_at_once_and_says_so<P: Pool>(factory: &impl TlsFactory<P>) {
    let fleet = start(3, false);
    let stranger = Tls::new().root_ca_pem(material(&fleet).stranger_ca_pem.clone());
    let redlock = over_tls(&fleet, &stranger, factory);
    let refused = tokio::time::timeout(PATIENCE, redlock.lock(&unique_prefix("wrong_ca")))
        .await
        .expect("no hang")
        .expect_err("untrusted server");
    assert!(refused.is_no_quorum() && !refused.is_taken(), "{refused}");
    let text = printed(&refused).to_lowercase();
    assert!(
        text.contains("certificate"),
        "the error must say why: {text}"
    );
}

/// `from_url` takes a `rediss://` URL (it does not refuse the scheme) and trusts the
/// system's roots, which do not include the test's CA: the lock fails on the certificate.
pub async fn rediss_url_trusts_the_system_roots<P: Pool>(factory: &impl Factory<P>) {
    let fleet = start(1, false);
    let url = fleet.tls_url(0).expect("tls url");
    let pool = factory(&url).expect("a rediss:// URL");
    let redlock = Redlock::with_options(vec![pool], options(2)).expect("options");
    let refused = tokio::time::timeout(PATIENCE, redlock.lock(&unique_prefix("system_roots")))
        .await
        .expect("no hang")
        .expect_err("the system does not trust the test CA");
    let text = printed(&refused).to_lowercase();
    assert!(
        text.contains("certificate"),
        "the error must say why: {text}"
    );
}

/// TLS material for a `redis://` URL is a configuration error, before anything is sent.
pub async fn tls_material_for_a_plain_url_is_refused<P: Pool>(factory: &impl TlsFactory<P>) {
    let fleet = start(1, false);
    let Err(err) = factory(&fleet.url(0), &trusting(&fleet)) else {
        panic!("TLS material for a redis:// URL must be refused");
    };
    assert!(
        err.is_config() && err.to_string().contains("rediss://"),
        "{err}"
    );
}
