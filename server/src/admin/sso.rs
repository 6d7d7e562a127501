//! Single sign-on settings: the identity provider from its metadata file, and which
//! group values grant the console's roles.

use super::{Admin, AdminError, Problems};
use crate::saml::IdentityProvider;
use crate::store::IdentityProviderRow;

/// The settings form. Empty metadata keeps the stored identity provider's.
#[derive(Debug, Clone, Default)]
pub struct SingleSignOnChanges {
    pub metadata_xml: String,
    pub group_attribute: String,
    pub admin_group: String,
    pub viewer_group: String,
}

fn one_line(p: &mut Problems, field: &'static str, value: &str) {
    if value.chars().any(char::is_control) || value.len() > 256 {
        p.add(field, "must be one line of at most 256 characters");
    }
}

impl Admin {
    pub async fn identity_provider(&self) -> Result<Option<IdentityProviderRow>, AdminError> {
        Ok(self.store.identity_provider().await?)
    }

    /// Checks and stores the identity provider. Every problem is reported at once and
    /// nothing is stored unless all is well.
    pub async fn set_identity_provider(
        &self,
        changes: &SingleSignOnChanges,
    ) -> Result<IdentityProviderRow, AdminError> {
        let current = self.store.identity_provider().await?;
        let mut p = Problems::default();
        let metadata_xml = changes.metadata_xml.trim();
        let (metadata_xml, idp) = match (metadata_xml.is_empty(), &current) {
            (true, Some(row)) => (row.metadata_xml.clone(), IdentityProvider::from_metadata(&row.metadata_xml).ok()),
            (true, None) => {
                p.add("metadata_xml", "upload the identity provider's metadata (XML)");
                (String::new(), None)
            }
            (false, _) => {
                (metadata_xml.to_string(), p.check("metadata_xml", IdentityProvider::from_metadata(metadata_xml)))
            }
        };
        let group_attribute = changes.group_attribute.trim();
        if group_attribute.is_empty() {
            p.add("group_attribute", "name the attribute that carries the user's groups");
        }
        let (admin_group, viewer_group) = (changes.admin_group.trim(), changes.viewer_group.trim());
        for (field, value) in
            [("group_attribute", group_attribute), ("admin_group", admin_group), ("viewer_group", viewer_group)]
        {
            one_line(&mut p, field, value);
        }
        if admin_group.is_empty() && viewer_group.is_empty() {
            p.add("admin_group", "map at least one group value to a role, or nobody could sign in");
        }
        if !admin_group.is_empty() && admin_group == viewer_group {
            p.add("viewer_group", "must differ from the admin group value");
        }
        p.into_result()?;
        let Some(idp) = idp else {
            return Err(AdminError::Conflict("the stored identity provider metadata no longer reads".into()));
        };
        let optional = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
        let row = IdentityProviderRow {
            metadata_xml,
            entity_id: idp.entity_id,
            sso_url: idp.sso_url,
            signing_certificates: idp.signing_certificates,
            group_attribute: group_attribute.to_string(),
            admin_group: optional(admin_group),
            viewer_group: optional(viewer_group),
            enabled: current.as_ref().is_some_and(|c| c.enabled),
            local_sign_in: current.as_ref().is_none_or(|c| c.local_sign_in),
            version: current.as_ref().map_or(1, |c| c.version + 1),
        };
        self.store.save_identity_provider(&row, &self.actor).await?;
        Ok(row)
    }
}

impl Admin {
    /// Turns single sign-on and password sign-in on or off. At least one must stay on,
    /// and single sign-on needs a role mapping (checked when the provider was saved).
    pub async fn set_sign_in_policy(&self, sso: bool, local: bool) -> Result<(), AdminError> {
        if !sso && !local {
            let mut p = Problems::default();
            p.add("local_sign_in", "keep at least one way to sign in");
            p.into_result()?;
        }
        let Some(idp) = self.store.identity_provider().await? else {
            return Err(AdminError::Conflict("configure the identity provider first".into()));
        };
        // Without passwords, single sign-on must be able to let an admin in.
        if !local && (!sso || idp.admin_group.is_none() || IdentityProvider::from_metadata(&idp.metadata_xml).is_err())
        {
            let mut p = Problems::default();
            p.add(
                "local_sign_in",
                "password sign-in can be turned off only while single sign-on is on and grants the admin role",
            );
            p.into_result()?;
        }
        Ok(self.store.set_sign_in_policy(sso, local, &self.actor).await?)
    }
}
