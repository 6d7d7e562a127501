//! SAML signing and verification, many times and from several threads at once, starting
//! together in a fresh process. The console verifies responses on a pool of worker
//! threads, so libxml2 and xmlsec are used concurrently from the first request on. Every
//! valid response must be accepted every time: before the fixes in
//! vendor/samael/POSTERN-PATCH.md (changes 4 and 5) about one signing or verification in a
//! hundred failed, because libxml2 was handed a freed encoding name. This file is its own
//! test binary so that the threads below really are the process's first parses.

use std::sync::{Arc, Barrier};

use postern::saml::{ServiceProviderSession, ServiceProviderUrls};
use postern_tests::saml_idp::{Response, Signing, TestIdp};

const CONSOLE: &str = "https://relay.test.example";
const THREADS: usize = 6;
const ROUNDS: usize = 50;

#[test]
fn concurrent_first_signings_and_verifications_all_agree() {
    let idp = Arc::new(TestIdp::new());
    let session =
        Arc::new(ServiceProviderSession::new(&ServiceProviderUrls::new(CONSOLE), &idp.metadata(CONSOLE)).unwrap());
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (idp, session, start) = (Arc::clone(&idp), Arc::clone(&session), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for round in 0..ROUNDS {
                    let request = format!("_q{t}x{round}");
                    let mut response = Response::new(CONSOLE, &request, &format!("user{t}@example.com"), &["ops"]);
                    // Both places a signature can be, so both of xmlsec's paths run.
                    response.signing = if round % 2 == 0 { Signing::Assertion } else { Signing::Response };
                    let encoded = TestIdp::encode(&idp.signed_xml(&response));
                    let login = session
                        .verify(&encoded, std::slice::from_ref(&request), "groups")
                        .unwrap_or_else(|e| panic!("thread {t}, round {round}: a valid response was refused: {e:?}"));
                    assert_eq!(login.name_id, format!("user{t}@example.com"), "thread {t}, round {round}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker thread panicked");
    }
}
