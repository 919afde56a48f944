//! The `holdings` report (SPEC §16.4): what this node can serve to peers, sent to the master on
//! its control stream whenever it changes (at most once a second) and again on every new
//! session (the master forgets a node's holdings with its session).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::Message;
use hearth_protocol::messages::overlay::{Holdings, MAX_HOLDINGS};
use tokio::sync::{Notify, mpsc, watch};

/// Shortest time between two reports.
pub const DEBOUNCE: Duration = Duration::from_secs(1);

/// Reports the holdings of `dir` through `outbound` when `changed` fires or a session starts.
pub async fn run(
    dir: PathBuf,
    changed: Arc<Notify>,
    outbound: mpsc::UnboundedSender<Message>,
    mut sessions: watch::Receiver<Option<quinn::Connection>>,
) {
    let mut last: Option<Holdings> = None;
    loop {
        tokio::select! {
            () = changed.notified() => {}
            r = sessions.changed() => {
                if r.is_err() {
                    return;
                }
                last = None; // a new session: report again
            }
        }
        if sessions.borrow().is_none() {
            continue;
        }
        let d = dir.clone();
        let Ok((mut complete, mut partial)) =
            tokio::task::spawn_blocking(move || super::store::holdings(&d)).await
        else {
            continue;
        };
        complete.truncate(MAX_HOLDINGS);
        partial.truncate(MAX_HOLDINGS - complete.len());
        let now = Holdings { complete, partial };
        if last.as_ref() != Some(&now) {
            if outbound.send(Message::Holdings(now.clone())).is_err() {
                return;
            }
            last = Some(now);
        }
        tokio::time::sleep(DEBOUNCE).await;
    }
}
