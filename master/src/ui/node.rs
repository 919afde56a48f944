//! A node's page: its state and facts, its uptime over the last 30 days as a chart (probes
//! passed and failed per day, counted from the ledger's probe entries), its instances, and this
//! month's provisional statement (bandwidth served, credits, energy). Operators — and the
//! volunteer whose node it is — drain or activate it from here, through the same code as
//! `POST /v1/nodes/{id}/drain|activate`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use hearth_api::MAX_ENTRIES_PER_READ;
use hearth_ledger::{Body, Entry, Month, Statement};
use hearth_protocol::NodeId;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::fleet::when;
use super::i18n::Lang;
use super::page::{UiError, Viewer};
use super::signin::Token;
use crate::access::Access;
use crate::api::blocking;
use crate::clock::now_ms;
use crate::context::Context;
use crate::ledger::Ledger;

/// Days the uptime chart covers.
pub const DAYS: u64 = 30;
const DAY_MS: u64 = 86_400_000;

/// Probes passed and failed, per day (days since the epoch).
pub type Daily = BTreeMap<u64, (u64, u64)>;

/// The node's probes passed and failed per day since `from_ms`, from the ledger's probe
/// entries (each the final outcome of one random-time probe).
pub fn daily_probes(ledger: &Ledger, node: &NodeId, from_ms: u64) -> Result<Daily, UiError> {
    let size = ledger.size();
    let mut out = Daily::new();
    let mut start = 0;
    while start < size {
        let chunk = ledger
            .entries(start, MAX_ENTRIES_PER_READ.min(size - start))
            .map_err(|e| UiError::Master(e.to_string()))?;
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let entry = Entry::parse(line).map_err(|e| UiError::Master(e.to_string()))?;
            if let Body::Probe(p) = &entry.body
                && p.node == *node
                && p.issued_at_ms >= from_ms
            {
                let day = out.entry(p.issued_at_ms / DAY_MS).or_default();
                if p.passed() {
                    day.0 += 1;
                } else {
                    day.1 += 1;
                }
            }
        }
        start += MAX_ENTRIES_PER_READ;
    }
    Ok(out)
}

/// The page's query: what was just done, shown once.
#[derive(Debug, Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /ui/nodes/{id}`.
pub async fn page(
    State(ctx): State<Arc<Context>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let r = async {
        viewer.may(Access::OwnNode, &[("id", &id)])?;
        let node: NodeId = id
            .parse()
            .map_err(|_| UiError::NotFound(format!("`{id}` is not a node id")))?;
        let store = ctx.store.clone();
        let record = blocking(move || store.node(&node))
            .await?
            .ok_or_else(|| UiError::NotFound(format!("no node {node} is enrolled")))?;
        let view = crate::api::view(&ctx, &record);
        let now = now_ms();
        let from = (now / DAY_MS).saturating_sub(DAYS - 1) * DAY_MS;
        let ledger = ctx.ledger.clone();
        let daily = tokio::task::spawn_blocking(move || daily_probes(&ledger, &node, from))
            .await
            .map_err(|e| UiError::Master(e.to_string()))??;
        let statement = ctx
            .ledger
            .books()
            .statements(Month::of(now))
            .into_iter()
            .find(|s| s.node == node);
        let axum::Json(instances) =
            crate::workload_api::list_instances(State(ctx.clone()), Extension(viewer.who.clone()))
                .await?;
        let instances: Vec<Value> = instances
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| i["node"] == Value::String(node.to_string()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let acts = viewer
            .may(Access::NodeAction, &[("id", &id), ("action", "drain")])
            .is_ok();
        let lang = viewer.chrome.lang;
        let title = lang.f("node_title", &[("id", &super::fleet::short(&node))]);
        let csrf = viewer.chrome.csrf(&ctx);
        let body = html! {
            h1 title=(node) { (title) }
            @match q.done.as_deref() {
                Some("drain") => p.notice role="status" { (lang.t("node_drained")) },
                Some("activate") => p.notice role="status" { (lang.t("node_activated")) },
                _ => {},
            }
            p.facts { (lang.f("node_facts", &[("home", &view.facts.home), ("isp", &view.facts.isp), ("country", &view.facts.country)])) }
            p { span id="node-state" data-state=(view.state) { (lang.f("node_state_now", &[("state", &view.state), ("when", &when(view.last_heartbeat_ms, lang))])) } }
            @if acts {
                @let (action, label) = if view.admin == "draining" { ("activate", "node_activate") } else { ("drain", "node_drain") };
                form.inline method="post" action={ "/ui/nodes/" (node) "/" (action) } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" id="node-action" data-action=(action) { (lang.t(label)) }
                }
            }
            h2 { (lang.t("node_uptime_30d")) }
            (chart(lang, &daily, now))
            (standing(lang, &view))
            h2 { (lang.t("node_instances")) }
            (instance_table(lang, &instances))
            h2 { (lang.t("node_statement")) }
            (statement_table(lang, statement.as_ref()))
        };
        Ok(viewer.show(&ctx, &title, body))
    };
    let r = r.await;
    viewer.answer(&ctx, r)
}

/// The 30-day chart: one bar per day, its height the share of probes passed (SVG attributes
/// only, no inline style, so the page's CSP holds), and the same counts as a table.
fn chart(lang: Lang, daily: &Daily, now: u64) -> Markup {
    let today = now / DAY_MS;
    let days: Vec<u64> = (0..DAYS).map(|i| today + 1 + i - DAYS).collect();
    let day_name = |d: u64| {
        when(Some(d * DAY_MS), lang)
            .get(..10)
            .unwrap_or_default()
            .to_owned()
    };
    html! {
        svg.uptime id="uptime" viewBox="0 0 400 126" role="img" aria-label=(lang.t("node_uptime_30d")) {
            text x="0" y="12" class="label" { "100 %" }
            text x="0" y="104" class="label" { "0" }
            line x1="34" y1="100" x2="400" y2="100" class="axis" {}
            line x1="34" y1="8" x2="400" y2="8" class="grid" {}
            @for (i, d) in days.iter().enumerate() {
                @let x = 36 + i * 12;
                @match daily.get(d) {
                    Some(&(passed, failed)) if passed + failed > 0 => {
                        @let h = (passed * 92 / (passed + failed)).max(1);
                        rect x=(x) y=(100 - h) width="10" height=(h) class=(if passed * 10 >= (passed + failed) * 9 { "ok" } else { "low" }) data-day=(day_name(*d)) {
                            title { (day_name(*d)) ": " (passed) " / " (passed + failed) }
                        }
                    },
                    _ => rect x=(x) y="98" width="10" height="2" class="none" {},
                }
            }
            @if let (Some(first), Some(last)) = (days.first(), days.last()) {
                text x="36" y="120" class="label" { (day_name(*first)) }
                text x="400" y="120" class="label end" { (day_name(*last)) }
            }
        }
        @if daily.is_empty() {
            p.empty { (lang.t("node_no_probes")) }
        } @else {
            h3 { (lang.t("node_probes")) }
            table id="probes" {
                thead { tr { th { (lang.t("col_day")) } th.num { (lang.t("col_passed")) } th.num { (lang.t("col_failed")) } } }
                tbody { @for (d, (p, f)) in daily.iter().rev() { tr { td { (day_name(*d)) } td.num { (p) } td.num { (f) } } } }
            }
        }
    }
}

fn standing(lang: Lang, view: &hearth_api::NodeView) -> Markup {
    html! {
        @if let Some(s) = &view.standing {
            p.standing {
                (lang.t("col_standing")) ": " strong { (s.standing.as_str()) } " · "
                (lang.t("col_score")) ": " (format!("{:.1} %", f64::from(s.score_ppm) / 10_000.0)) " · "
                (lang.t("node_scored")) ": " (s.probes_passed) " / " (s.probes_passed + s.probes_failed)
            }
        }
    }
}

fn instance_table(lang: Lang, instances: &[Value]) -> Markup {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    html! {
        @if instances.is_empty() {
            p.empty { (lang.t("node_no_instances")) }
        } @else {
            table id="instances" {
                thead { tr { th { (lang.t("col_instance")) } th { (lang.t("col_deployment")) } th { (lang.t("col_recipe")) } th { (lang.t("col_state")) } th { (lang.t("col_health")) } } }
                tbody { @for i in instances { tr {
                    td { (text(&i["instance"])) } td { (text(&i["deployment"])) }
                    td { (text(i.pointer("/recipe/name").unwrap_or(&Value::Null))) "@" (text(i.pointer("/recipe/version").unwrap_or(&Value::Null))) }
                    td { (text(&i["state"])) } td { (text(&i["health"])) }
                } } }
            }
        }
    }
}

fn statement_table(lang: Lang, s: Option<&Statement>) -> Markup {
    html! {
        @if let Some(s) = s {
            table id="statement" { tbody {
                tr { th { (lang.t("col_uptime")) } td.num { (format!("{:.2} %", f64::from(s.uptime_ppm) / 10_000.0)) } }
                tr { th { (lang.t("node_bandwidth")) } td.num { (s.bytes_served) " B" } }
                tr { th { (lang.t("node_credits")) } td.num { (hearth_ledger::render::eur(s.credits_cents)) " EUR" } }
                tr { th { (lang.t("node_energy")) } td.num { (format!("{:.1}", s.energy_wh as f64 / 1000.0)) " kWh (" (s.power_w) " W)" } }
            } }
        } @else {
            p.empty { (lang.t("statements_none")) }
        }
    }
}

/// `POST /ui/nodes/{id}/drain|activate`.
pub async fn action(
    State(ctx): State<Arc<Context>>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<Token>,
) -> Response {
    let r = async {
        if !viewer.chrome.csrf_ok(&ctx, &f.csrf) {
            return Err(UiError::BadForm);
        }
        if !["drain", "activate"].contains(&action.as_str()) {
            return Err(UiError::NotFound(format!(
                "no node action `{action}` on the dashboard"
            )));
        }
        viewer.may(Access::NodeAction, &[("id", &id), ("action", &action)])?;
        let _set =
            crate::api::node_action(State(ctx.clone()), Path((id.clone(), action.clone()))).await?;
        tracing::info!(user = %viewer.who.name, node = %id, %action, "node state set from the dashboard");
        Ok(Redirect::to(&format!("/ui/nodes/{id}?done={action}")).into_response())
    };
    let r = r.await;
    viewer.answer(&ctx, r)
}
