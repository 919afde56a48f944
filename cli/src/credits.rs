//! `hearth credits --month YYYY-MM [--node ID] [--json|--csv]`: the month's statements from
//! `GET /v1/credits`, printed through `hearth_ledger::render` — the same bytes `hearth ledger
//! verify FILE --statements M` prints for a closed month recomputed from an export.

use anyhow::{Context as _, anyhow};
use hearth_api::CreditsView;
use hearth_ledger::render::{Format, render};
use hearth_ledger::{Month, Statement};
use hearth_protocol::NodeId;

use crate::client::Client;

/// Prints the statements of `month` (of `node` only, if given).
pub(crate) async fn credits(
    client: &Client,
    month: &str,
    node: Option<&str>,
    json: bool,
    csv: bool,
) -> anyhow::Result<()> {
    let month: Month = month.parse().map_err(|e| anyhow!("--month: {e}"))?;
    let node: Option<NodeId> = node
        .map(|n| n.parse().map_err(|e| anyhow!("--node {n}: {e}")))
        .transpose()?;
    let mut path = format!("/v1/credits?month={month}");
    if let Some(n) = node {
        path.push_str(&format!("&node={n}"));
    }
    let v = client.get(&path).await?;
    let view: CreditsView = serde_json::from_value(v)
        .context("the master's /v1/credits answer is not a CreditsView")?;
    let statements = view
        .statements
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<Vec<Statement>, _>>()
        .context("a statement in the master's answer does not parse")?;
    if view.provisional {
        eprintln!(
            "{month} is not closed yet: provisional statements computed from the {} entries so far",
            view.size
        );
    }
    let format = if json {
        Format::Json
    } else if csv {
        Format::Csv
    } else {
        Format::Table
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(render(&statements, format).as_bytes())?;
    out.flush()?;
    Ok(())
}
