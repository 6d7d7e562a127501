//! The queue as an administrator acts on it (Exchange's Retry-Queue / Remove-Message).

use uuid::Uuid;

use super::{Admin, AdminError};
use crate::store::NewTrackingEvent;

impl Admin {
    /// Makes a queued message due now.
    pub async fn retry_message(&self, id: Uuid) -> Result<(), AdminError> {
        Ok(self.store.retry_message(id, &self.actor).await?)
    }

    /// Removes a message without a DSN; its undelivered recipients get a DROP tracking
    /// event naming who removed it. Returns those recipients.
    pub async fn remove_message(&self, id: Uuid) -> Result<Vec<String>, AdminError> {
        let (sender, undelivered) = self.store.remove_message(id, &self.actor).await?;
        let drop_event = NewTrackingEvent {
            event_id: "DROP",
            source: "ADMIN",
            sender: Some(sender),
            recipient_status: undelivered.iter().map(|_| "removed by an administrator".to_string()).collect(),
            recipients: undelivered.clone(),
            queue_id: Some(id),
            detail: Some(format!("removed from the queue by {}", self.actor)),
            ..Default::default()
        };
        self.store.insert_tracking_events(&[drop_event]).await?;
        Ok(undelivered)
    }
}
