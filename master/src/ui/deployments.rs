//! The deployments page (operators and auditors): each deployment with its replicas wanted and
//! serving, their spread over homes, ISPs and countries, every replica's node, place, state and
//! health, and where each backup copy lives — the same views as `GET /v1/deployments` and
//! `GET /v1/deployments/{name}/where`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use hearth_api::WhereView;
use maud::{Markup, html};
use serde_json::Value;

use super::fleet::{short, when};
use super::i18n::Lang;
use super::page::{UiError, Viewer};
use crate::access::Access;
use crate::context::Context;

/// `GET /ui/deployments`.
pub async fn page(State(ctx): State<Arc<Context>>, viewer: Viewer) -> Response {
    let r = async {
        viewer.may(Access::Audit, &[])?;
        let Json(all) = crate::deploy_api::list_deployments(State(ctx.clone())).await?;
        let mut shown = Vec::new();
        for d in all.as_array().into_iter().flatten() {
            let name = d["name"].as_str().unwrap_or_default().to_owned();
            let Json(at) = crate::backup_api::where_is(State(ctx.clone()), Path(name)).await?;
            shown.push((d, at));
        }
        let lang = viewer.chrome.lang;
        let body = html! {
            h1 { (lang.t("deployments_title")) }
            @if shown.is_empty() { p.empty { (lang.t("deployments_none")) } }
            @for (d, at) in &shown { (deployment(lang, d, at)) }
        };
        Ok::<_, UiError>(viewer.show(&ctx, lang.t("deployments_title"), body))
    };
    let r = r.await;
    viewer.answer(&ctx, r)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn deployment(lang: Lang, d: &Value, at: &WhereView) -> Markup {
    let t = |k| lang.t(k);
    let spread = &d["spread"];
    html! {
        section.deployment data-deployment=(text(&d["name"])) {
            h2 { (text(&d["name"])) }
            p {
                (t("col_replicas")) ": " span.running { (text(&d["running"])) } " / " (text(&d["wanted"])) " · "
                (lang.f("deployments_spread", &[("homes", &text(&spread["homes"])), ("isps", &text(&spread["isps"])), ("countries", &text(&spread["countries"]))]))
            }
            @for note in d["notes"].as_array().into_iter().flatten() { p.notice { (text(note)) } }
            table.replicas {
                thead { tr {
                    th { (t("col_instance")) } th { (t("col_node")) } th { (t("col_home")) } th { (t("col_isp")) }
                    th { (t("col_country")) } th { (t("col_state")) } th { (t("col_health")) }
                } }
                tbody { @for r in d["replicas"].as_array().into_iter().flatten() { tr data-serving=(text(&r["serving"])) {
                    td { (text(&r["instance"])) }
                    td { a href={ "/ui/nodes/" (text(&r["node"])) } { (short(&text(&r["node"]))) } }
                    td { (text(&r["home"])) } td { (text(&r["isp"])) } td { (text(&r["country"])) }
                    td { (text(&r["state"])) } td { (text(&r["health"])) }
                } } }
            }
            h3 { (t("col_backups")) }
            @if at.copies.is_empty() {
                p.empty { (t("backups_none")) }
            } @else {
                table.copies {
                    thead { tr {
                        th { (t("col_node")) } th { (t("col_home")) } th { (t("col_isp")) } th { (t("col_country")) }
                        th { (t("col_snapshots")) } th { (t("col_latest")) }
                    } }
                    tbody { @for c in &at.copies { tr {
                        td { a href={ "/ui/nodes/" (c.node) } { (short(&c.node)) } }
                        td { (c.home) } td { (c.isp) } td { (c.country) } td.num { (c.snapshots) }
                        td { (c.latest_ms.map_or_else(|| t("none").to_owned(), |ms| when(Some(ms), lang))) }
                    } } }
                }
            }
        }
    }
}
