use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::errors::FetchError;
use super::{AccountClient, Extractor, Jitter, RetryPolicy};
use crate::catalog::Report;
use crate::dates;
use crate::pipeline::{Account, Auth};
use crate::retry::{Class, Retryable};
use crate::secret::Secret;
use crate::transform::ApiError;
use crate::window::Window;

#[test]
fn classification() {
    let c = |code| {
        FetchError::from_api(ApiError {
            errcode: code,
            errmsg: "x".into(),
        })
        .class()
    };
    assert_eq!(c(-1), Class::Retry);
    assert_eq!(c(42001), Class::RefreshToken);
    assert_eq!(c(40014), Class::RefreshToken);
    assert_eq!(c(45011), Class::WaitMinute);
    assert_eq!(c(45009), Class::Fatal);
    assert_eq!(c(40164), Class::Fatal);
    assert!(matches!(
        FetchError::from_api(ApiError {
            errcode: 48001,
            errmsg: String::new()
        }),
        FetchError::Permission { errcode: 48001 }
    ));
}

#[test]
fn backoff_grows_and_is_bounded() {
    let p = RetryPolicy::default();
    let j = Jitter::new(7);
    let b1 = p.backoff(1, &j);
    let b5 = p.backoff(5, &j);
    assert!(b1 <= Duration::from_millis(500) && b1 >= Duration::from_millis(250));
    assert!(b5 >= Duration::from_secs(4) && b5 <= Duration::from_secs(8));
    assert!(p.backoff(30, &j) <= p.max);
}

/// A loopback HTTP/1.1 server: `answer(request line, body)` gives (status, extra
/// headers, body); every request (line and body) is recorded.
struct Fake {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

type Answer = (u16, String, Vec<u8>);

impl Fake {
    fn start(answer: impl Fn(&str, &str) -> Answer + Send + 'static) -> Fake {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                let mut r = BufReader::new(c.try_clone().expect("clone"));
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                log.lock()
                    .expect("log")
                    .push(format!("{}\n{body}", line.trim()));
                let (status, headers, out) = answer(line.trim(), &body);
                // Chunked when asked: no length to refuse the body by up front.
                if headers.contains("chunked") {
                    let head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n{headers}\r\n");
                    let _ = c.write_all(head.as_bytes());
                    for part in out.chunks(4096) {
                        let _ = c.write_all(format!("{:x}\r\n", part.len()).as_bytes());
                        let _ = c.write_all(part);
                        let _ = c.write_all(b"\r\n");
                    }
                    let _ = c.write_all(b"0\r\n\r\n");
                    continue;
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                    out.len()
                );
                let _ = c.write_all(head.as_bytes());
                let _ = c.write_all(&out);
            }
        });
        Fake { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("log").clone()
    }
}

fn ok(body: &str) -> Answer {
    (200, String::new(), body.as_bytes().to_vec())
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(5),
        minute_wait: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

fn account(auth: Auth) -> Account {
    Account {
        name: "brand_cn".into(),
        app_id: "wxtest0000000001".into(),
        app_secret: Secret::new("the-app-secret"),
        auth,
        region: None,
    }
}

fn window() -> (&'static Report, Window, chrono::NaiveDate) {
    let d = |s| dates::parse(s).expect("date");
    let w = Window {
        begin: d("2026-01-10"),
        end: d("2026-01-16"),
    };
    (
        crate::catalog::find("user_summary").expect("report"),
        w,
        d("2026-01-20"),
    )
}

/// The test window fetched once through `client`.
async fn fetch_once(ex: &Extractor, client: &AccountClient) -> Result<super::Fetched, FetchError> {
    let (r, w, today) = window();
    ex.fetch_held(client, r, w, today, &mut 0, &mut None).await
}

const TOKEN: &str = r#"{"access_token":"tok-123","expires_in":7200}"#;

/// A redirect to another host would re-send the secret: it is not followed, and the
/// error says so.
#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = Fake::start(|_, _| ok(TOKEN));
    let to = format!("{}/cgi-bin/stable_token", elsewhere.url());
    // The location repeats what a careless host might echo: neither may reach the error.
    let front = Fake::start(move |_, _| {
        let at = format!("Location: {to}?access_token=tok-123&secret=the-app-secret\r\n");
        (302, at, Vec::new())
    });
    let ex = Extractor::new(100, fast(), 1);
    let client = AccountClient::new(&account(Auth::StableToken), &front.url(), None, 50, 2);
    let e = fetch_once(&ex, &client).await.err().expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("302") && msg.contains("redirect") && msg.contains("127.0.0.1"),
        "{msg}"
    );
    assert!(
        !msg.contains("the-app-secret") && !msg.contains("tok-123"),
        "{msg}"
    );
    assert_eq!(front.seen().len(), 1, "a redirect is not retried");
    assert!(elsewhere.seen().is_empty(), "the other host got nothing");
}

/// A body past its cap is refused (here a token answer of 100 KiB), and the token
/// failure is remembered: the next window makes no call at all.
#[tokio::test]
async fn oversized_bodies_are_refused_and_a_failed_token_source_is_remembered() {
    let big = format!(
        r#"{{"access_token":"{}","expires_in":7200}}"#,
        "a".repeat(100 << 10)
    );
    let fake = Fake::start(move |_, _| ok(&big));
    let ex = Extractor::new(100, fast(), 1);
    let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
    let e = fetch_once(&ex, &client).await.err().expect("refused");
    assert!(
        matches!(&e, FetchError::TokenSource { kind: "stable_token", cause } if cause.contains("larger than 65536 bytes")),
        "{e}"
    );
    let calls = fake.seen().len();
    assert_eq!(calls, 1, "a body past its cap is not retried");
    let again = fetch_once(&ex, &client).await.err().expect("remembered");
    assert!(matches!(again, FetchError::TokenSource { .. }), "{again}");
    assert_eq!(fake.seen().len(), calls, "no more token attempts");
}

/// The same without a Content-Length: the body is read in chunks and refused at the
/// cap.
#[tokio::test]
async fn an_oversized_chunked_body_is_refused_at_the_cap() {
    let big = format!(
        r#"{{"access_token":"{}","expires_in":7200}}"#,
        "a".repeat(100 << 10)
    );
    let fake = Fake::start(move |_, _| {
        (
            200,
            "Transfer-Encoding: chunked\r\n".into(),
            big.as_bytes().to_vec(),
        )
    });
    let ex = Extractor::new(100, fast(), 1);
    let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
    let e = fetch_once(&ex, &client).await.err().expect("refused");
    assert!(e.to_string().contains("larger than 65536 bytes"), "{e}");
    // A small chunked answer still works.
    let fake = Fake::start(|line, _| {
        let body = if line.contains("stable_token") {
            TOKEN.to_string()
        } else {
            json!({"list": []}).to_string()
        };
        (
            200,
            "Transfer-Encoding: chunked\r\n".into(),
            body.into_bytes(),
        )
    });
    let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
    let f = fetch_once(&ex, &client).await.expect("fetched");
    assert_eq!(f.decoded.batch.num_rows(), 0);
}

/// A rejected token is force-refreshed; over the forced-refresh allowance (45009 on
/// force_refresh) the current stable token is fetched instead, and the account goes on.
#[tokio::test]
async fn forced_refresh_over_its_allowance_falls_back_to_the_current_token() {
    let n = Arc::new(AtomicU64::new(0));
    let m = Arc::clone(&n);
    let fake = Fake::start(move |line, body| {
        if line.contains("stable_token") {
            if body.contains(r#""force_refresh":true"#) {
                return ok(r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#);
            }
            let k = m.fetch_add(1, Ordering::SeqCst);
            return ok(&format!(
                r#"{{"access_token":"tok-{k}","expires_in":7200}}"#
            ));
        }
        if line.contains("access_token=tok-0") {
            return ok(r#"{"errcode":40001,"errmsg":"invalid credential"}"#);
        }
        ok(r#"{"list":[]}"#)
    });
    let ex = Extractor::new(100, fast(), 1);
    let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
    fetch_once(&ex, &client)
        .await
        .expect("fetched with the fallback token");
    let seen = fake.seen();
    assert_eq!(
        seen.iter()
            .filter(|s| s.contains(r#""force_refresh":true"#))
            .count(),
        1
    );
    assert_eq!(n.load(Ordering::SeqCst), 2, "{seen:?}");
}

/// 45011 at a token endpoint waits for the next minute and tries again; 45009 there
/// fails the token source, never the report's quota.
#[tokio::test]
async fn token_endpoint_minute_limit_and_quota() {
    let n = Arc::new(AtomicU64::new(0));
    let m = Arc::clone(&n);
    let body = json!({"ref_date": "2026-01-10", "user_source": 0, "new_user": 1, "cancel_user": 0});
    let data = json!({ "list": [body] }).to_string();
    let fake = Fake::start(move |line, _| {
        if line.contains("stable_token") {
            if m.fetch_add(1, Ordering::SeqCst) < 2 {
                return ok(r#"{"errcode":45011,"errmsg":"api minute-quota reach limit"}"#);
            }
            return ok(TOKEN);
        }
        ok(&data)
    });
    let ex = Extractor::new(100, fast(), 1);
    let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
    let f = fetch_once(&ex, &client).await.expect("fetched after 45011");
    assert_eq!(f.decoded.batch.num_rows(), 1);
    assert_eq!(n.load(Ordering::SeqCst), 3);

    let fake =
        Fake::start(|_, _| ok(r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#));
    let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
    let e = fetch_once(&ex, &client).await.err().expect("failed");
    assert!(
        matches!(&e, FetchError::TokenSource { cause, .. } if cause.contains("45009")),
        "{e:?}"
    );
    assert_eq!(fake.seen().len(), 1, "45009 is not retried");
}
