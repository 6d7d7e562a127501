//! The queue as an administrator acts on it (Exchange's Retry-Queue / Remove-Message).

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Admin, AdminError};
use crate::delivery::bounce::{self, BounceInput, FailedRecipient};
use crate::store::{NewMessage, NewTrackingEvent, RemovedMessage};

/// The reply a DSN gives for a recipient removed from the queue (RFC 3463 5.3.0: a mail
/// system status, not the recipient's fault).
const REMOVED_REPLY: &str = "550 5.3.0 Message removed from the queue by the administrator";

impl Admin {
    /// Makes a queued message due now.
    pub async fn retry_message(&self, id: Uuid) -> Result<(), AdminError> {
        Ok(self.store.retry_message(id, &self.actor).await?)
    }

    /// Removes a message; its undelivered recipients get a DROP tracking event naming who
    /// removed it. With `with_dsn` (Remove-Message -WithNDR) the sender also gets a DSN
    /// listing them, queued in the same transaction as the removal; never for the null
    /// sender (RFC 5321 §4.5.5) nor when every recipient was already delivered.
    pub async fn remove_message(&self, id: Uuid, with_dsn: bool) -> Result<RemovedMessage, AdminError> {
        let now = OffsetDateTime::now_utc();
        let removed = self
            .store
            .remove_message(id, &self.actor, with_dsn, |m| with_dsn.then(|| self.removal_dsn(m, now)).flatten())
            .await?;
        let mut events = vec![NewTrackingEvent {
            event_id: "DROP",
            source: "ADMIN",
            sender: Some(removed.sender.clone()),
            recipient_status: removed.undelivered.iter().map(|_| "removed by an administrator".to_string()).collect(),
            recipients: removed.undelivered.clone(),
            queue_id: Some(id),
            detail: Some(format!("removed from the queue by {}", self.actor)),
            ..Default::default()
        }];
        if let Some(dsn_id) = removed.dsn_id {
            events.push(NewTrackingEvent {
                event_id: "DSN",
                source: "ADMIN",
                sender: Some(String::new()),
                recipients: vec![removed.sender.clone()],
                queue_id: Some(dsn_id),
                reference: Some(id.simple().to_string()),
                detail: Some(format!(
                    "DSN for {} recipient(s) removed from {}",
                    removed.undelivered.len(),
                    id.simple()
                )),
                ..Default::default()
            });
        }
        self.store.insert_tracking_events(&events).await?;
        Ok(removed)
    }

    fn removal_dsn(&self, removed: &RemovedMessage, now: OffsetDateTime) -> Option<NewMessage> {
        if removed.sender.is_empty() || removed.undelivered.is_empty() {
            return None;
        }
        let failed: Vec<FailedRecipient> = removed
            .undelivered
            .iter()
            .map(|address| FailedRecipient { address: address.clone(), reply: REMOVED_REPLY.into(), remote_mta: None })
            .collect();
        let input = BounceInput {
            reporting_mta: &self.default_fqdn,
            original_sender: &removed.sender,
            original_queue_id: removed.id,
            original_body: &removed.body,
            received_at: removed.received_at,
            failed: &failed,
            dsn_id: Uuid::now_v7(),
            now,
        };
        // As long as the removed message would have been kept, and at least a day; the
        // original is deleted in the same transaction, so nothing to link it to.
        Some(bounce::dsn_message(&input, removed.expires_at.max(now + Duration::days(1)), None, None))
    }
}
