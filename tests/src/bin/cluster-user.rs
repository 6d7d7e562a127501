//! A test process that uses the embedded test cluster and then ends the way its argument
//! says (`panic`, or `wait` to be killed): the child that `tests/tests/harness.rs` ends
//! to check the cluster does not outlive its last user.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let how = std::env::args().nth(1).unwrap_or_default();
    let db = postern_tests::TestDb::new().await;
    let store = db.store().await;
    store.migrate().await.unwrap();
    println!("ready {}", postern_tests::embedded_dir().expect("no TEST_DATABASE_URL here").display());
    match how.as_str() {
        "panic" => panic!("a test failed"),
        _ => loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        },
    }
}
