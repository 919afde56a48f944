//! The dashboard's security rules over plain HTTP against a real master (no browser needed):
//! the Content-Security-Policy and other headers on every page, and no inline script or style
//! in any page a browser would refuse under it; cookie attributes (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind TLS); forms refused without this browser's CSRF token,
//! changing nothing; sign-in attempts limited; tampered cookies, removed users and foreign
//! redirect targets refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_master::ui::CSP;
use hearth_tests::deploy::cli_ok;
use hearth_tests::master::MasterProc;
use hearth_tests::node::enrol_node;
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Client, StatusCode};

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `name=value` of the `Set-Cookie` named `name`.
fn cookie_pair(h: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(h)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

/// The value of the first hidden `csrf` input.
fn csrf_of(html: &str) -> String {
    let (_, rest) = html
        .split_once("name=\"csrf\" value=\"")
        .expect("a csrf input");
    rest.split('"').next().unwrap().to_owned()
}

/// A browser's state: its cookies and the CSRF token its pages carry.
struct Session {
    cookies: String,
    csrf: String,
}

/// Opens the sign-in page, then signs in with `credential`; the answer and the session.
async fn sign_in(c: &Client, base: &str, credential: &str) -> (reqwest::Response, Session) {
    let page = c.get(format!("{base}/ui/signin")).send().await.unwrap();
    let seed = cookie_pair(page.headers(), "hearth_csrf").unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    let answer = c
        .post(format!("{base}/ui/signin"))
        .header("cookie", &seed)
        .form(&[
            ("csrf", csrf.as_str()),
            ("credential", credential),
            ("next", "/ui/fleet"),
        ])
        .send()
        .await
        .unwrap();
    let mut cookies = vec![seed];
    if let Some(s) = cookie_pair(answer.headers(), "hearth_session") {
        // The sign-in answers a fresh CSRF seed too.
        cookies = vec![s, cookie_pair(answer.headers(), "hearth_csrf").unwrap()];
    }
    let cookies = cookies.join("; ");
    let fleet = c
        .get(format!("{base}/ui/fleet"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = if fleet.contains("name=\"csrf\"") {
        csrf_of(&fleet)
    } else {
        String::new()
    };
    (answer, Session { cookies, csrf })
}

/// The node's administrative state, as the CLI shows it.
fn admin_of(m: &MasterProc, node: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&cli_ok(m, &["node", "show", node, "--json"])).unwrap();
    v["admin"].as_str().unwrap().to_owned()
}

async fn get(c: &Client, url: &str, s: &Session) -> reqwest::Response {
    c.get(url)
        .header("cookie", &s.cookies)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_headers_cookies_and_forms_are_locked_down() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &["--checkpoint-interval", "200ms"]);
    let base = format!("http://{}", m.http);
    let c = client();
    let (node, _) = enrol_node(&tmp.path().join("n"), m.quic, &m.token(&[]))
        .await
        .unwrap();

    // Not signed in: a redirect to sign in, with the headers and a CSRF seed cookie.
    let r = c.get(format!("{base}/ui/fleet")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/signin?next=%2Fui%2Ffleet");
    assert_eq!(r.headers()["content-security-policy"], CSP);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let seed = set_cookies(r.headers()).join("\n");
    assert!(
        seed.contains("HttpOnly") && seed.contains("SameSite=Strict"),
        "{seed}"
    );
    assert!(!seed.contains("Secure"), "plain HTTP: {seed}");
    let r = c
        .get(format!("{base}/ui/signin"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        set_cookies(r.headers()).join("\n").contains("; Secure"),
        "behind TLS"
    );

    // The admin signs in; the session cookie is HttpOnly and SameSite=Strict.
    let (r, admin) = sign_in(&c, &base, &m.token).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/fleet");
    let session = set_cookies(r.headers())
        .into_iter()
        .find(|c| c.starts_with("hearth_session="))
        .unwrap();
    assert!(
        session.contains("; HttpOnly") && session.contains("; SameSite=Strict"),
        "{session}"
    );

    // Every page: 200, the CSP, and nothing inline that the CSP would block.
    let pages = [
        "/ui/fleet".to_owned(),
        format!("/ui/nodes/{node}"),
        "/ui/deployments".into(),
        "/ui/ledger".into(),
        "/ui/statements".into(),
        "/ui/signin".into(),
    ];
    for page in &pages {
        let r = get(&c, &format!("{base}{page}"), &admin).await;
        assert_eq!(r.status(), StatusCode::OK, "{page}");
        assert_eq!(r.headers()["content-security-policy"], CSP, "{page}");
        let html = r.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "{page}: inline code"
        );
        assert!(
            !html.contains(" style=") && !html.contains(" onclick="),
            "{page}: inline style or handler"
        );
        assert_eq!(html.matches("<script").count(), 1, "{page}: the one script");
    }
    let js = c
        .get(format!("{base}/ui/assets/hearth.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let csv = get(&c, &format!("{base}/ui/statements.csv"), &admin).await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");

    // A form without the right token changes nothing.
    for token in ["", "forged", admin.csrf.get(1..).unwrap()] {
        let r = c
            .post(format!("{base}/ui/nodes/{node}/drain"))
            .header("cookie", &admin.cookies)
            .form(&[("csrf", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "token {token:?}");
    }
    assert_eq!(admin_of(&m, &node.to_string()), "active", "not drained");
    let r = c
        .post(format!("{base}/ui/nodes/{node}/drain"))
        .header("cookie", &admin.cookies)
        .form(&[("csrf", admin.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(admin_of(&m, &node.to_string()), "draining");
    let r = c
        .post(format!("{base}/ui/nodes/{node}/revoke"))
        .header("cookie", &admin.cookies)
        .form(&[("csrf", admin.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the dashboard only drains and activates"
    );
    let r = c
        .post(format!("{base}/ui/language"))
        .header("cookie", &admin.cookies)
        .form(&[("csrf", "forged"), ("lang", "nl"), ("back", "/ui/fleet")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(cookie_pair(r.headers(), "hearth_lang").is_none());

    // Redirects stay on the dashboard.
    let page = c.get(format!("{base}/ui/signin")).send().await.unwrap();
    let seed = cookie_pair(page.headers(), "hearth_csrf").unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    for next in [
        "https://example.org/",
        "//example.org/ui/",
        "/ui//example.org",
        "/v1/nodes",
    ] {
        let r = c
            .post(format!("{base}/ui/signin"))
            .header("cookie", &seed)
            .form(&[
                ("csrf", csrf.as_str()),
                ("credential", m.token.as_str()),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["location"], "/ui/fleet", "next {next}");
    }

    // A tampered cookie is no session.
    let tampered = Session {
        cookies: admin.cookies.replacen("hs1.", "hs1.x", 1),
        csrf: String::new(),
    };
    let r = get(&c, &format!("{base}/ui/fleet"), &tampered).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // A removed user's session ends at once.
    let ana = cli_ok(&m, &["user", "add", "ana", "--role", "auditor"])
        .trim()
        .to_owned();
    let (_, ana_session) = sign_in(&c, &base, &ana).await;
    assert_eq!(
        get(&c, &format!("{base}/ui/ledger"), &ana_session)
            .await
            .status(),
        StatusCode::OK
    );
    cli_ok(&m, &["user", "remove", "ana"]);
    let r = get(&c, &format!("{base}/ui/ledger"), &ana_session).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "removed");
}

#[tokio::test]
async fn sign_in_attempts_are_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let base = format!("http://{}", m.http);
    let c = client();
    // Ten wrong ones are told so; then even the right one waits (10 a minute after that).
    let wrong =
        "hu1:0123456789abcdef:0000000000000000000000000000000000000000000000000000000000000000";
    for i in 0..10 {
        let (r, _) = sign_in(&c, &base, wrong).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("unknown, removed or expired")
        );
    }
    let (r, _) = sign_in(&c, &base, &m.token).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie_pair(r.headers(), "hearth_session").is_none());
    assert!(r.text().await.unwrap().contains("Too many attempts"));
}
