//! The dashboard end to end, in a real headless Chromium (`hearth_tests::browser`) against a
//! real master with two real agents and a real deployment: each role signs in with its own
//! credential (a volunteer with the enrolment token her node used); the volunteer sees her
//! node and gets 403 on the other; the auditor sees deployments and where their replicas run,
//! verifies a ledger entry's inclusion proof in the browser and downloads statements as CSV;
//! the operator drains a node from its page and the CLI shows it draining; the language menu
//! switches to Dutch and `Accept-Language` picks French. Every page is screenshotted into
//! `target/screenshots/dashboard-*.png`. Skipped with a message when Chromium is missing,
//! except under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use fantoccini::Locator;
use hearth_ledger::{Body, Entry};
use hearth_tests::browser::{Browser, BrowserOptions, ELEMENT_WAIT};
use hearth_tests::deploy::{cli_ok, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::NodeProc;

/// Limit for the browser part of a test, once the browser and master are up.
const LIMIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(60);

/// The HTTP status of a GET from inside the page (the browser's cookies go with it).
async fn status_of(b: &Browser, path: &str) -> anyhow::Result<u64> {
    let v = b
        .client()
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'}).then(r => done(r.status), e => done(String(e)));",
            vec![serde_json::json!(path)],
        )
        .await?;
    v.as_u64()
        .ok_or_else(|| anyhow::anyhow!("fetch {path}: {v}"))
}

/// The body of a GET from inside the page.
async fn text_at(b: &Browser, path: &str) -> anyhow::Result<String> {
    let v = b
        .client()
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done, e => done('error ' + e));",
            vec![serde_json::json!(path)],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_owned())
}

async fn sign_in(b: &Browser, base: &str, credential: &str) -> anyhow::Result<()> {
    b.goto(&format!("{base}/ui/signin")).await?;
    b.fill("#credential", credential).await?;
    b.click("form.signin button[type=submit]").await?;
    b.wait_for("span.who", ELEMENT_WAIT).await?;
    Ok(())
}

async fn sign_out(b: &Browser) -> anyhow::Result<()> {
    b.click("form[action='/ui/signout'] button").await?;
    b.wait_for("form.signin", ELEMENT_WAIT).await?;
    Ok(())
}

/// The `data-node` of every row of the fleet page's node table.
async fn fleet_rows(b: &Browser) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for row in b.client().find_all(Locator::Css("#nodes tbody tr")).await? {
        out.push(row.attr("data-node").await?.unwrap_or_default());
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_sees_what_is_theirs_in_a_real_browser() -> anyhow::Result<()> {
    let case = "each_role_sees_what_is_theirs_in_a_real_browser";
    let Some(b) = Browser::start(case).await? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let mut args = FAST.to_vec();
    args.extend(["--probe-mean", "300ms", "--checkpoint-interval", "200ms"]);
    let m = MasterProc::start(tmp.path(), &args);
    let base = format!("http://{}", m.http);
    let vera_token = m.token(&["--volunteer", "vera"]);
    let vera_node = NodeProc::enrol_and_run_at(
        &tmp.path().join("vera"),
        m.quic,
        &vera_token,
        ("BE", "Proximus", "home-vera"),
    );
    let other_node = NodeProc::enrol_and_run_at(
        &tmp.path().join("other"),
        m.quic,
        &m.token(&[]),
        ("NL", "KPN", "home-other"),
    );
    let vera = vera_node.status()["node"].as_str().unwrap().to_owned();
    let other = other_node.status()["node"].as_str().unwrap().to_owned();
    for id in [&vera, &other] {
        let up = eventually(WAIT, async || {
            (m.node_state(id).await == "active").then_some(())
        })
        .await;
        assert!(up.is_some(), "node {id} never active:\n{}", m.log());
    }
    // (Trimmed: a newline typed into the form would submit it.)
    let audrey = cli_ok(&m, &["user", "add", "audrey", "--role", "auditor"])
        .trim()
        .to_owned();
    let otto = cli_ok(&m, &["user", "add", "otto", "--role", "operator"])
        .trim()
        .to_owned();
    let recipe = upload_static_site(&m, tmp.path(), |t| t);
    cli_ok(
        &m,
        &["deploy", "web", "--recipe", &recipe, "--replicas", "2"],
    );
    let placed = eventually(WAIT, async || {
        let (_, v) = m.get("/v1/deployments/web").await;
        (v["running"] == 2).then_some(())
    })
    .await;
    assert!(placed.is_some(), "web never ran twice:\n{}", m.log());
    // A passed probe of each node reaches the ledger (the public NDJSON entries).
    let probed = eventually(WAIT, async || {
        let text = reqwest::get(format!("{base}/v1/ledger/entries?start=0"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let passed = |node: &str| {
            text.lines().any(|l| {
                Entry::parse(l.as_bytes()).is_ok_and(|e| {
                    matches!(&e.body, Body::Probe(p) if p.node.to_string() == node && p.passed())
                })
            })
        };
        (passed(&vera) && passed(&other)).then_some(())
    })
    .await;
    assert!(
        probed.is_some(),
        "no probe of each node passed:\n{}",
        m.log()
    );
    let run = tokio::time::timeout(LIMIT, async {
        // Not signed in: every page leads to the sign-in form, and a wrong credential is told.
        b.goto(&format!("{base}/ui/fleet")).await?;
        b.wait_for("form.signin", ELEMENT_WAIT).await?;
        b.fill(
            "#credential",
            "hu1:0000000000000000:0000000000000000000000000000000000000000000000000000000000000000",
        )
        .await?;
        b.click("form.signin button[type=submit]").await?;
        assert_eq!(
            b.text_of("p.error").await?,
            "This credential is unknown, removed or expired."
        );
        b.screenshot("dashboard-signin").await?;

        // The volunteer, with her enrolment token: her node only.
        sign_in(&b, &base, &vera_token).await?;
        assert_eq!(
            b.text_of("span.who").await?,
            "Signed in as vera (volunteer)"
        );
        assert_eq!(fleet_rows(&b).await?, std::slice::from_ref(&vera));
        assert!(
            b.client()
                .find(Locator::Css("a[href='/ui/deployments']"))
                .await
                .is_err(),
            "a volunteer's menu has no deployments"
        );
        b.screenshot("dashboard-fleet-volunteer").await?;
        b.goto(&format!("{base}/ui/nodes/{vera}")).await?;
        b.wait_for("svg#uptime rect.ok", ELEMENT_WAIT).await?;
        b.wait_for("#instances tbody tr", ELEMENT_WAIT).await?;
        assert_eq!(b.text_of("#node-action").await?, "Drain");
        b.screenshot("dashboard-node-volunteer").await?;
        b.phone().await?;
        b.screenshot("dashboard-node-phone").await?;
        b.set_window_size(1280, 900).await?;
        b.goto(&format!("{base}/ui/nodes/{other}")).await?;
        b.wait_for("p.error[data-error='403']", ELEMENT_WAIT)
            .await?;
        assert_eq!(status_of(&b, &format!("/ui/nodes/{other}")).await?, 403);
        assert_eq!(status_of(&b, "/ui/deployments").await?, 403);
        b.screenshot("dashboard-forbidden").await?;
        let csv = text_at(&b, "/ui/statements.csv").await?;
        assert!(
            !csv.contains(&other),
            "a volunteer's CSV has only her nodes:\n{csv}"
        );
        sign_out(&b).await?;
        assert_eq!(
            status_of(&b, "/ui/fleet").await?,
            200,
            "the sign-in page, after a redirect"
        );
        assert!(
            text_at(&b, "/ui/fleet")
                .await?
                .contains("form class=\"signin\"")
        );

        // The auditor: every node, deployments and where they run, the ledger, statements.
        sign_in(&b, &base, &audrey).await?;
        let mut rows = fleet_rows(&b).await?;
        rows.sort();
        let mut both = vec![vera.clone(), other.clone()];
        both.sort();
        assert_eq!(rows, both);
        b.goto(&format!("{base}/ui/deployments")).await?;
        assert_eq!(
            b.text_of("section[data-deployment='web'] span.running")
                .await?,
            "2"
        );
        let replicas = b
            .client()
            .find_all(Locator::Css(
                "section[data-deployment='web'] table.replicas tbody tr",
            ))
            .await?;
        assert_eq!(replicas.len(), 2);
        b.screenshot("dashboard-deployments").await?;
        b.goto(&format!("{base}/ui/nodes/{vera}")).await?;
        b.wait_for("svg#uptime", ELEMENT_WAIT).await?;
        assert!(
            b.client().find(Locator::Css("#node-action")).await.is_err(),
            "an auditor changes nothing"
        );
        b.goto(&format!("{base}/ui/ledger")).await?;
        b.wait_for("pre#checkpoint", ELEMENT_WAIT).await?;
        let button = b
            .wait_for("#entries button[data-verify]", ELEMENT_WAIT)
            .await?;
        let seq = button.attr("data-seq").await?.unwrap();
        button.click().await?;
        let verified = b
            .wait_for(
                &format!("output#proof-{seq}[data-result='verified']"),
                ELEMENT_WAIT,
            )
            .await?;
        assert!(verified.text().await?.contains("verified in this browser"));
        b.screenshot("dashboard-ledger").await?;
        b.goto(&format!("{base}/ui/statements")).await?;
        b.wait_for("#statements tbody tr", ELEMENT_WAIT).await?;
        b.screenshot("dashboard-statements").await?;
        let csv = text_at(&b, "/ui/statements.csv").await?;
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap_or_default()
                .starts_with("month,node,class,country"),
            "{csv}"
        );
        assert_eq!(lines.count(), 2, "one row per node:\n{csv}");
        assert!(csv.contains(&vera) && csv.contains(&other), "{csv}");
        sign_out(&b).await?;

        // The operator drains the other node from its page; the CLI shows it draining.
        sign_in(&b, &base, &otto).await?;
        b.screenshot("dashboard-fleet-operator").await?;
        b.goto(&format!("{base}/ui/nodes/{other}")).await?;
        b.click("#node-action[data-action='drain']").await?;
        b.wait_for("p.notice[role='status']", ELEMENT_WAIT).await?;
        assert_eq!(b.text_of("#node-action").await?, "Activate");
        let shown = cli_ok(&m, &["node", "show", &other, "--json"]);
        let shown: serde_json::Value = serde_json::from_str(&shown)?;
        assert_eq!(shown["admin"], "draining", "{shown}");
        let listed = cli_ok(&m, &["nodes"]);
        let line = listed
            .lines()
            .find(|l| l.contains(&other[..12]))
            .unwrap_or_default();
        assert!(line.contains("draining"), "{listed}");

        // The language menu: Dutch, remembered across pages.
        b.click("#lang option[value='nl']").await?;
        let dutch = eventually(Duration::from_secs(10), async || {
            let lang = b
                .client()
                .find(Locator::Css("html"))
                .await
                .ok()?
                .attr("lang")
                .await
                .ok()??;
            (lang == "nl").then_some(())
        })
        .await;
        assert!(dutch.is_some(), "the menu did not switch to Dutch");
        assert_eq!(b.text_of("header nav a[href='/ui/fleet']").await?, "Vloot");
        b.goto(&format!("{base}/ui/ledger")).await?;
        b.wait_for("pre#checkpoint", ELEMENT_WAIT).await?;
        assert_eq!(
            b.client()
                .find(Locator::Css("html"))
                .await?
                .attr("lang")
                .await?
                .as_deref(),
            Some("nl")
        );
        b.screenshot("dashboard-ledger-nl").await?;
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the browser part took over {LIMIT:?}"));
    if let Err(e) | Ok(Err(e)) = &run {
        let page = b.client().source().await.unwrap_or_default();
        let _ = b.screenshot("dashboard-failure").await;
        panic!("{e:#}\npage:\n{page}\nmaster log:\n{}", m.log());
    }
    b.close().await
}

/// The browser's `Accept-Language` picks the page's language before anyone signs in.
#[tokio::test]
async fn the_browser_language_picks_the_page_language() -> anyhow::Result<()> {
    let case = "the_browser_language_picks_the_page_language";
    let Some(b) = Browser::start_with(case, &BrowserOptions::default().lang("fr")).await? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let m = MasterProc::start(tmp.path(), &[]);
    tokio::time::timeout(Duration::from_secs(60), async {
        b.goto(&format!("http://{}/ui/signin", m.http)).await?;
        assert_eq!(b.text_of("h1").await?, "Connexion");
        assert_eq!(
            b.client()
                .find(Locator::Css("html"))
                .await?
                .attr("lang")
                .await?
                .as_deref(),
            Some("fr")
        );
        b.screenshot("dashboard-signin-fr").await?;
        anyhow::Ok(())
    })
    .await??;
    b.close().await
}
