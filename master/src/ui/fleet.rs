//! The fleet page: the viewer's nodes (every node for operators and auditors, their own for a
//! volunteer) counted by state per country — as a grid of country tiles and a table — and per
//! ISP, then the nodes themselves, filtered by country and state, a hundred to a page so that a
//! fleet of any size gives a page of bounded weight.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use hearth_api::NodeView;
use maud::{Markup, html};
use serde::Deserialize;

use super::i18n::Lang;
use super::page::{UiError, Viewer, encode};
use crate::access::Access;
use crate::api::blocking;
use crate::context::Context;

/// Nodes listed per page.
pub const PER_PAGE: usize = 100;

/// The page's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// Only nodes of this country.
    pub country: Option<String>,
    /// Only nodes in this state (`up`, `suspect`, `down`, `draining`, `pending`).
    pub state: Option<String>,
    /// Page number, from 0.
    pub page: Option<usize>,
}

/// Counts of nodes by state.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    nodes: usize,
    up: usize,
    suspect: usize,
    down: usize,
    draining: usize,
    pending: usize,
}

/// The column a node counts in.
fn bucket(n: &NodeView) -> &'static str {
    match n.liveness.as_str() {
        "pending" => "pending",
        "down" => "down",
        "suspect" | "returning" => "suspect",
        _ if n.admin == "draining" => "draining",
        _ => "up",
    }
}

impl Counts {
    fn add(&mut self, n: &NodeView) {
        self.nodes += 1;
        match bucket(n) {
            "pending" => self.pending += 1,
            "down" => self.down += 1,
            "suspect" => self.suspect += 1,
            "draining" => self.draining += 1,
            _ => self.up += 1,
        }
    }
}

/// `GET /ui/fleet`.
pub async fn page(
    State(ctx): State<Arc<Context>>,
    viewer: Viewer,
    Query(f): Query<Filter>,
) -> Response {
    let r = async {
        viewer.may(Access::Scoped, &[])?;
        let store = ctx.store.clone();
        let records = blocking(move || store.nodes()).await?;
        let nodes: Vec<NodeView> = records
            .iter()
            .filter(|r| viewer.who.sees(&r.id))
            .map(|r| crate::api::view(&ctx, r))
            .collect();
        let lang = viewer.chrome.lang;
        Ok::<_, UiError>(viewer.show(&ctx, lang.t("fleet_title"), render(lang, &nodes, &f)))
    };
    let r = r.await;
    viewer.answer(&ctx, r)
}

fn counts_row(c: &Counts) -> Markup {
    html! {
        td.num { (c.nodes) } td.num { (c.up) } td.num { (c.suspect) }
        td.num { (c.down) } td.num { (c.draining) } td.num { (c.pending) }
    }
}

fn count_heads(lang: Lang) -> Markup {
    let t = |k| lang.t(k);
    html! {
        th.num { (t("col_nodes")) } th.num { (t("col_up")) } th.num { (t("col_suspect")) }
        th.num { (t("col_down")) } th.num { (t("col_draining")) } th.num { (t("col_pending")) }
    }
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(ms: Option<u64>, lang: Lang) -> String {
    ms.and_then(|ms| i64::try_from(ms).ok())
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || lang.t("never").to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// The first 12 characters of a node id, for tables (the full id is the link's title).
pub fn short(id: &impl std::fmt::Display) -> String {
    let s = id.to_string();
    s.get(..12).map_or(s.clone(), str::to_owned)
}

/// The fleet page's body for these nodes (also what the fleet-page benchmark renders).
pub fn render(lang: Lang, nodes: &[NodeView], f: &Filter) -> Markup {
    let t = |k| lang.t(k);
    let mut total = Counts::default();
    let mut by_country: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_isp: BTreeMap<(String, &str), Counts> = BTreeMap::new();
    for n in nodes {
        let country = n.facts.country.to_string();
        total.add(n);
        by_isp
            .entry((country.clone(), n.facts.isp.as_str()))
            .or_default()
            .add(n);
        by_country.entry(country).or_default().add(n);
    }
    let shown: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| {
            f.country
                .as_deref()
                .is_none_or(|c| n.facts.country.to_string() == c)
        })
        .filter(|n| f.state.as_deref().is_none_or(|s| bucket(n) == s))
        .collect();
    let page = f.page.unwrap_or(0);
    let from = page.saturating_mul(PER_PAGE).min(shown.len());
    let to = from.saturating_add(PER_PAGE).min(shown.len());
    let link = |p: usize| {
        let mut q = format!("/ui/fleet?page={p}");
        if let Some(c) = &f.country {
            q += &format!("&country={}", encode(c));
        }
        if let Some(s) = &f.state {
            q += &format!("&state={}", encode(s));
        }
        q
    };
    html! {
        h1 { (t("fleet_title")) }
        p.summary { (lang.f("fleet_summary", &[("nodes", &total.nodes), ("countries", &by_country.len()), ("up", &total.up)])) }
        h2 { (t("fleet_grid")) }
        ul.grid {
            @for (country, c) in &by_country {
                li.tile {
                    a href={ "/ui/fleet?country=" (encode(country)) } {
                        span.code { (country) }
                        span.count { (c.up) " / " (c.nodes) }
                        meter min="0" max=(c.nodes) value=(c.up) {}
                    }
                }
            }
        }
        h2 { (t("fleet_by_country")) }
        table.counts id="by-country" {
            thead { tr { th { (t("col_country")) } (count_heads(lang)) } }
            tbody { @for (country, c) in &by_country { tr { td { (country) } (counts_row(c)) } } }
        }
        h2 { (t("fleet_by_isp")) }
        table.counts id="by-isp" {
            thead { tr { th { (t("col_country")) } th { (t("col_isp")) } (count_heads(lang)) } }
            tbody { @for ((country, isp), c) in &by_isp { tr { td { (country) } td { (isp) } (counts_row(c)) } } }
        }
        h2 { (t("fleet_nodes")) }
        form.filter method="get" action="/ui/fleet" {
            label for="country" { (t("col_country")) }
            select id="country" name="country" {
                option value="" { (t("filter_all")) }
                @for country in by_country.keys() {
                    option value=(country) selected[f.country.as_deref() == Some(country.as_str())] { (country) }
                }
            }
            label for="state" { (t("col_state")) }
            select id="state" name="state" {
                option value="" { (t("filter_all")) }
                @for (s, k) in [("up", "col_up"), ("suspect", "col_suspect"), ("down", "col_down"), ("draining", "col_draining"), ("pending", "col_pending")] {
                    option value=(s) selected[f.state.as_deref() == Some(s)] { (t(k)) }
                }
            }
            button type="submit" { (t("fleet_filter")) }
        }
        p { (lang.f("fleet_shown", &[("from", &(from + usize::from(to > from))), ("to", &to), ("total", &shown.len())])) }
        table.nodes id="nodes" {
            thead { tr {
                th { (t("col_node")) } th { (t("col_state")) } th { (t("col_home")) }
                th { (t("col_isp")) } th { (t("col_country")) } th { (t("col_last_heartbeat")) }
            } }
            tbody {
                @for n in shown.get(from..to).unwrap_or_default() {
                    tr data-node=(n.id) data-state=(n.state) {
                        td { a href={ "/ui/nodes/" (n.id) } title=(n.id) { (short(&n.id)) } }
                        td { span class={ "state " (bucket(n)) } { (n.state) } }
                        td { (n.facts.home) } td { (n.facts.isp) } td { (n.facts.country) }
                        td { (when(n.last_heartbeat_ms, lang)) }
                    }
                }
            }
        }
        nav.pages {
            @if page > 0 { a rel="prev" href=(link(page - 1)) { (t("page_prev")) } }
            @if to < shown.len() { a rel="next" href=(link(page + 1)) { (t("page_next")) } }
        }
    }
}
