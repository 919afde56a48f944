//! The ledger page (everyone signed in): the latest signed checkpoint, who signed it (the master
//! and each witness's co-signature), and the latest entries, each with a button that verifies
//! its inclusion proof in the browser itself (`assets/hearth.js`: it reads the public ledger
//! routes and recomputes the root with WebCrypto, trusting nothing the page says).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use hearth_ledger::Entry;
use maud::html;

use super::fleet::{short, when};
use super::page::{UiError, Viewer};
use crate::access::Access;
use crate::context::Context;

/// Entries listed on the page.
pub const SHOWN: u64 = 25;
/// Checkpoints listed on the page (the latest ones among those of the last
/// [`RECENT_SPAN`] entries).
pub const RECENT: usize = 10;
const RECENT_SPAN: u64 = 10_000;

/// The signers of a signed note: the names of its signature lines (`— <name> <signature>`).
pub fn signers(note: &str) -> Vec<&str> {
    note.lines()
        .filter_map(|l| l.strip_prefix("— "))
        .filter_map(|l| l.split(' ').next())
        .collect()
}

/// `GET /ui/ledger`.
pub async fn page(State(ctx): State<Arc<Context>>, viewer: Viewer) -> Response {
    let r = async {
        viewer.may(Access::SignedIn, &[])?;
        let lang = viewer.chrome.lang;
        let t = |k| lang.t(k);
        let Some(cp) = ctx.ledger.checkpoint() else {
            let body = html! { h1 { (t("ledger_title")) } p.empty { (t("ledger_none")) } };
            return Ok(viewer.show(&ctx, t("ledger_title"), body));
        };
        let start = cp.size.saturating_sub(SHOWN);
        let ledger = ctx.ledger.clone();
        let size = cp.size;
        let lines = tokio::task::spawn_blocking(move || ledger.entries(start, size - start))
            .await
            .map_err(|e| UiError::Master(e.to_string()))?
            .map_err(|e| UiError::Master(e.to_string()))?;
        let mut entries = Vec::new();
        for (i, line) in lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let entry = Entry::parse(line).map_err(|e| UiError::Master(e.to_string()))?;
            entries.push((start + i as u64, entry));
        }
        let names = signers(&cp.note);
        let recent = ctx
            .ledger
            .checkpoints_since(cp.size.saturating_sub(RECENT_SPAN));
        let recent: Vec<_> = recent.iter().rev().take(RECENT).collect();
        let origin = names.first().copied().unwrap_or("?");
        let body = html! {
            h1 { (t("ledger_title")) }
            h2 { (t("ledger_checkpoint")) }
            p { (lang.f("ledger_size", &[("size", &cp.size), ("origin", &origin)])) }
            pre.note id="checkpoint" { (cp.note) }
            h2 { (t("ledger_cosignatures")) }
            @if names.len() <= 1 {
                p.empty { (t("ledger_no_cosignatures")) }
            } @else {
                ul id="cosigners" { @for w in names.iter().skip(1) { li { (w) } } }
            }
            h2 { (t("ledger_recent")) }
            table id="checkpoints" {
                thead { tr { th { (t("col_size")) } th { (t("col_signatures")) } } }
                tbody { @for c in &recent { tr {
                    td.num { (c.size) } td { (signers(&c.note).join(", ")) }
                } } }
            }
            h2 { (t("ledger_entries")) }
            table id="entries" {
                thead { tr { th { (t("col_seq")) } th { (t("col_time")) } th { (t("col_kind")) } th { (t("col_node")) } th {} } }
                tbody { @for (seq, e) in entries.iter().rev() { tr data-seq=(seq) {
                    td.num { (seq) } td { (when(Some(e.at_ms), lang)) } td { (e.body.kind()) }
                    td { @if let Some(n) = e.body.node() { (short(n)) } }
                    td {
                        button type="button" data-verify data-seq=(seq) data-out={ "proof-" (seq) }
                            data-checking=(t("ledger_checking")) data-ok=(t("ledger_verified")) data-bad=(t("ledger_mismatch")) {
                            (t("ledger_verify"))
                        }
                        " " output id={ "proof-" (seq) } .proof {}
                    }
                } } }
            }
        };
        Ok::<_, UiError>(viewer.show(&ctx, t("ledger_title"), body))
    };
    let r = r.await;
    viewer.answer(&ctx, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signers_are_the_names_of_the_signature_lines() {
        let note = "hearth-ledger/m\n3\nAAAA\n\n— hearth-ledger/m abc=\n— witness-a def=\n";
        assert_eq!(signers(note), ["hearth-ledger/m", "witness-a"]);
    }
}
