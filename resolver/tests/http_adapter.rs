//! The HTTP adapter against a small JSON API on loopback: URL template, auth header, 404 as
//! absence, answers reused within the cache time, timeout, list.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bver_contracts::{ErrorCode, RefPtr};
use bver_resolver::{Adapter, HttpAdapter, HttpConfig, Resolver, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-file HTTP/1.1 server: `/api/site/{id}` (needs `authorization: Bearer t`),
/// `/api/site` (a list), `/api/slow/{id}` (answers after 2 s); counts requests.
async fn api() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                counter.fetch_add(1, Ordering::SeqCst);
                let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
                let authed = req
                    .to_ascii_lowercase()
                    .contains("authorization: bearer t\r\n");
                let (status, body) = if path.starts_with("/api/slow/") {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    ("200 OK", "{}".to_owned())
                } else if !authed {
                    ("401 Unauthorized", "{}".to_owned())
                } else if path == "/api/site" {
                    (
                        "200 OK",
                        r#"[{"id":"a","kind":"power"},{"id":"b"}]"#.to_owned(),
                    )
                } else if path == "/api/site/a%20b" {
                    ("200 OK", r#"{"name":"spaced","version":3}"#.to_owned())
                } else if path == "/api/site/a" {
                    ("200 OK", r#"{"name":"A","kind":"power"}"#.to_owned())
                } else {
                    ("404 Not Found", "{}".to_owned())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), hits)
}

fn config(base: &str, auth: bool) -> HttpConfig {
    HttpConfig {
        url: format!("{base}/api/{{repo}}/{{id}}"),
        list_url: Some(format!("{base}/api/{{repo}}")),
        auth: auth.then(|| ("Authorization".to_owned(), "Bearer t".to_owned())),
        timeout: Duration::from_millis(500),
        cache_ttl: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn fetches_with_auth_caches_lists_and_times_out() {
    let (base, hits) = api().await;
    let adapter = Arc::new(HttpAdapter::new(config(&base, true)).unwrap());
    let mut resolver = Resolver::new();
    resolver.route("ext", adapter.clone());
    let r = resolver
        .resolve(&RefPtr::parse("bver://ext/site/a@name").unwrap())
        .await
        .unwrap();
    assert_eq!(r.value, "A");
    assert_eq!(r.source, Source::Http);
    let before = hits.load(Ordering::SeqCst);
    resolver
        .resolve(&RefPtr::parse("bver://ext/site/a").unwrap())
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), before, "served from the cache");
    let missing = resolver
        .resolve(&RefPtr::parse("bver://ext/site/zz").unwrap())
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);

    let page = adapter
        .list("ext", "site", Some("power"), None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].pointer.to_string(), "bver://ext/site/a");

    let slow = adapter
        .fetch(&RefPtr::parse("bver://ext/slow/x").unwrap())
        .await
        .unwrap_err();
    assert_eq!(slow.code, ErrorCode::Timeout);

    let unauthed = HttpAdapter::new(config(&base, false)).unwrap();
    let e = unauthed
        .fetch(&RefPtr::parse("bver://ext/site/a").unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("401"), "{}", e.message);

    assert!(
        HttpAdapter::new(HttpConfig {
            url: "https://x/{id}".into(),
            ..config(&base, true)
        })
        .is_err()
    );
}
