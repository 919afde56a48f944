//! Monthly statements: the month's statement of every node the viewer sees (all of them for
//! operators and auditors, their own for a volunteer) — provisional until the month closes —
//! and the same rows as CSV, byte for byte what `hearth credits --format csv` prints.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hearth_ledger::render::{Format, eur, render};
use hearth_ledger::{Month, Statement};
use maud::html;
use serde::Deserialize;

use super::fleet::short;
use super::page::{UiError, Viewer};
use crate::access::Access;
use crate::clock::now_ms;
use crate::context::Context;

/// The month asked for.
#[derive(Debug, Deserialize)]
pub struct Asked {
    month: Option<String>,
}

/// The month asked (this month when none), and the viewer's statements of it.
fn statements(
    ctx: &Context,
    viewer: &Viewer,
    q: &Asked,
) -> Result<(Month, bool, Vec<Statement>), UiError> {
    viewer.may(Access::Scoped, &[])?;
    let month = match q.month.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => m
            .parse::<Month>()
            .map_err(|e| UiError::NotFound(e.to_string()))?,
        None => Month::of(now_ms()),
    };
    let books = ctx.ledger.books();
    let all = books.statements(month);
    let stated = books.is_stated(month);
    Ok((
        month,
        stated,
        all.into_iter()
            .filter(|s| viewer.who.sees(&s.node))
            .collect(),
    ))
}

/// `GET /ui/statements[?month=YYYY-MM]`.
pub async fn page(
    State(ctx): State<Arc<Context>>,
    viewer: Viewer,
    Query(q): Query<Asked>,
) -> Response {
    let r = statements(&ctx, &viewer, &q).map(|(month, stated, rows)| {
        let lang = viewer.chrome.lang;
        let t = |k| lang.t(k);
        let body = html! {
            h1 { (t("statements_title")) }
            form.filter method="get" action="/ui/statements" {
                label for="month" { (t("statements_month")) }
                input id="month" name="month" type="month" value=(month);
                button type="submit" { (t("statements_pick")) }
            }
            @if !stated { p.notice { (t("statements_provisional")) } }
            p { a.download id="csv" href={ "/ui/statements.csv?month=" (month) } download { (t("statements_csv")) } }
            @if rows.is_empty() {
                p.empty { (t("statements_none")) }
            } @else {
                table id="statements" {
                    thead { tr {
                        th { (t("col_node")) } th { (t("col_country")) } th.num { (t("col_uptime")) }
                        th.num { (t("col_bytes")) } th.num { (t("col_credits")) } th.num { (t("col_energy")) }
                    } }
                    tbody { @for s in &rows { tr data-node=(s.node) {
                        td { a href={ "/ui/nodes/" (s.node) } { (short(&s.node)) } }
                        td { (s.country.map(|c| c.to_string()).unwrap_or_default()) }
                        td.num { (format!("{:.2} %", f64::from(s.uptime_ppm) / 10_000.0)) }
                        td.num { (s.bytes_served) }
                        td.num { (eur(s.credits_cents)) }
                        td.num { (format!("{:.1}", s.energy_wh as f64 / 1000.0)) }
                    } } }
                }
            }
        };
        viewer.show(&ctx, t("statements_title"), body)
    });
    viewer.answer(&ctx, r)
}

/// `GET /ui/statements.csv[?month=YYYY-MM]`.
pub async fn csv(
    State(ctx): State<Arc<Context>>,
    viewer: Viewer,
    Query(q): Query<Asked>,
) -> Response {
    let r = statements(&ctx, &viewer, &q).map(|(month, _, rows)| {
        let name = format!("attachment; filename=\"hearth-statements-{month}.csv\"");
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, name),
            ],
            render(&rows, Format::Csv),
        )
            .into_response()
    });
    viewer.answer(&ctx, r)
}
