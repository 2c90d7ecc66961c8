//! The caller of a request, from an API key or a console session, and every access rule.
//!
//! Tenancy is one rule: a practice's principal sees that practice and nothing else, and
//! another practice's things are "not found", exactly as if they did not exist, so that
//! nobody learns which practices (or broadcasts, or templates) exist. An administrator sees
//! everything. A federation's principal sees its member practices, and acts on them as an
//! administrator would (status changes, groups, broadcasts, their wording); everything
//! else is "not found" as for a practice, and managing practices, keys, federations or the
//! global wording stays an administrator's.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::domain::{ApiKeyId, OdsCode, PracticeId, UserId};
use crate::store::{
    ApiKeyRecord, FederationStore, KeyScope, Practice, PracticeStore, SessionRecord, StoreError,
};

/// Who is calling: an API key or a signed-in console user.
#[derive(Debug, Clone)]
pub struct Principal {
    /// What it may touch: one practice, a federation's practices, or everything.
    pub scope: KeyScope,
    /// How the audit trail names it: `key:<prefix>` or `user:<username>`.
    pub actor: String,
    credential: Credential,
    /// A federation's member practices, read once per request by [`Principal::resolved`];
    /// empty (it sees nothing) until then and for other scopes.
    members: Arc<BTreeSet<PracticeId>>,
}

/// What a principal proved itself with.
#[derive(Debug, Clone, Copy)]
enum Credential {
    /// An API key, by row id.
    ApiKey(ApiKeyId),
    /// A console session of this user (by row id).
    Session(UserId),
}

/// Why a principal may not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// Only an administrator may do this.
    #[error("this needs an administrator")]
    AdminOnly,
    /// The wording every practice uses (the global templates) is changed by administrators
    /// only; a practice changes its own overrides.
    #[error("only administrators change the wording every practice uses")]
    GlobalWording,
    /// No practice with this ODS code (as given), or not this principal's to see: the two
    /// are not told apart.
    #[error("no practice {0}")]
    NoPractice(String),
    /// The store failed while looking.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which templates a request that names no practice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// The wording every practice uses, whoever asks (the API: a practice key names its
    /// practice to read or change its overrides).
    Global,
    /// A practice's principal means its own practice's wording, an administrator the global
    /// one (the console: a practice user never sees a choice of practice).
    OwnPractice,
}

impl Principal {
    /// The principal of a live API key.
    pub fn of_key(record: &ApiKeyRecord) -> Self {
        Self {
            scope: record.scope,
            actor: format!("key:{}", record.prefix),
            credential: Credential::ApiKey(record.id),
            members: Arc::default(),
        }
    }

    /// The principal of a live console session.
    pub fn of_session(session: &SessionRecord) -> Self {
        Self {
            scope: session.user.scope,
            actor: format!("user:{}", session.user.username),
            credential: Credential::Session(session.user.id),
            members: Arc::default(),
        }
    }

    /// The principal with its federation's member practices read (for a federation's key
    /// or user; others are returned as they are). Until this is called a federation's
    /// principal sees nothing.
    pub async fn resolved(
        mut self,
        store: &(impl FederationStore + ?Sized),
    ) -> Result<Self, StoreError> {
        if let KeyScope::Federation(id) = self.scope {
            let members = store.federation_members(id).await?;
            self.members = Arc::new(members.into_iter().collect());
        }
        Ok(self)
    }

    /// Whether it may send one status change to many practices: an administrator, or a
    /// federation's principal (to its members).
    pub fn may_send_groups(&self) -> bool {
        matches!(self.scope, KeyScope::Admin | KeyScope::Federation(_))
    }

    /// Whether it may do everything (an admin key or an admin user).
    pub fn is_admin(&self) -> bool {
        matches!(self.scope, KeyScope::Admin)
    }

    /// Refuses anyone but an administrator.
    pub fn require_admin(&self) -> Result<(), Denied> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Denied::AdminOnly)
        }
    }

    /// Whether it may see the practice with row id `practice_id`, and everything of it.
    pub fn can_see(&self, practice_id: PracticeId) -> bool {
        match self.scope {
            KeyScope::Admin => true,
            KeyScope::Practice(own) => own == practice_id,
            KeyScope::Federation(_) => self.members.contains(&practice_id),
        }
    }

    /// The practice with this ODS code, if it exists and this principal may see it. Another
    /// practice's is "not found", exactly as if it did not exist.
    pub async fn practice(&self, store: &dyn PracticeStore, ods: &str) -> Result<Practice, Denied> {
        let not_found = || Denied::NoPractice(ods.to_string());
        let code = OdsCode::parse(ods).map_err(|_| not_found())?;
        match store.practice_by_ods(&code).await? {
            Some(practice) if self.can_see(practice.id) => Ok(practice),
            _ => Err(not_found()),
        }
    }

    /// The scope its `Idempotency-Key`s are kept in: `key:<key id>` for a key, and for a
    /// console session `key:-<user id>` (users have no key row; the sign keeps the two apart,
    /// and stored keys stay valid).
    pub fn idempotency_scope(&self) -> String {
        match self.credential {
            Credential::ApiKey(id) => format!("key:{id}"),
            Credential::Session(user_id) => format!("key:{}", -user_id.get()),
        }
    }

    /// Whether it may read the templates of `practice_id` (`None`: the global wording,
    /// which everyone may read).
    pub fn can_see_template(&self, practice_id: Option<PracticeId>) -> bool {
        practice_id.is_none_or(|p| self.can_see(p))
    }

    /// Whether it may change the templates of `practice` (`None`: the global wording).
    /// Administrators change anything; anyone else only their own practice's overrides.
    pub fn may_edit_template(&self, practice: Option<&Practice>) -> Result<(), Denied> {
        match practice {
            None if self.is_admin() => Ok(()),
            None => Err(Denied::GlobalWording),
            Some(p) if self.can_see(p.id) => Ok(()),
            Some(p) => Err(Denied::NoPractice(p.ods_code.to_string())),
        }
    }

    /// Whose templates a request is about: the practice it names (if this principal may see
    /// it), else as `unnamed` says. `None` is the global wording.
    pub async fn template_practice(
        &self,
        store: &dyn PracticeStore,
        named: Option<&str>,
        unnamed: Unnamed,
    ) -> Result<Option<Practice>, Denied> {
        match (named, unnamed, self.scope) {
            (Some(ods), _, _) => Ok(Some(self.practice(store, ods).await?)),
            (None, Unnamed::OwnPractice, KeyScope::Practice(own)) => {
                Ok(store.practice_by_id(own).await?)
            }
            (None, _, _) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scope: KeyScope) -> Principal {
        Principal::of_key(&ApiKeyRecord {
            id: ApiKeyId::new(7),
            scope,
            label: "test".into(),
            prefix: "gw_0123abcd".into(),
            last_used_at: None,
        })
    }

    fn user(scope: KeyScope) -> Principal {
        Principal::of_session(&SessionRecord {
            user: crate::store::User {
                id: UserId::new(3),
                username: "reception".into(),
                password_hash: String::new(),
                scope,
            },
            csrf_token: String::new(),
            expires_at: chrono::Utc::now(),
        })
    }

    #[test]
    fn a_practice_sees_only_itself_and_admins_see_all() {
        let (one, two) = (PracticeId::new(1), PracticeId::new(2));
        for principal in [key(KeyScope::Practice(one)), user(KeyScope::Practice(one))] {
            assert!(principal.can_see(one) && !principal.can_see(two));
            assert!(principal.require_admin().is_err());
            assert!(principal.can_see_template(None));
            assert!(
                principal.can_see_template(Some(one)) && !principal.can_see_template(Some(two))
            );
        }
        for principal in [key(KeyScope::Admin), user(KeyScope::Admin)] {
            assert!(principal.can_see(one) && principal.can_see(two));
            assert!(principal.require_admin().is_ok());
        }
    }

    #[test]
    fn a_federation_sees_its_members_once_they_are_read() {
        use crate::domain::FederationId;
        let (one, two) = (PracticeId::new(1), PracticeId::new(2));
        let mut principal = key(KeyScope::Federation(FederationId::new(4)));
        // Not yet resolved: it sees nothing.
        assert!(!principal.can_see(one) && !principal.can_see(two));
        principal.members = Arc::new([one].into_iter().collect());
        assert!(principal.can_see(one) && !principal.can_see(two));
        assert!(principal.require_admin().is_err() && principal.may_send_groups());
        assert!(matches!(
            principal.may_edit_template(None),
            Err(Denied::GlobalWording)
        ));
        assert!(!key(KeyScope::Practice(one)).may_send_groups());
        assert!(key(KeyScope::Admin).may_send_groups());
    }

    #[test]
    fn audit_names_and_idempotency_scopes_say_which_credential() {
        let (k, u) = (key(KeyScope::Admin), user(KeyScope::Admin));
        assert_eq!(k.actor, "key:gw_0123abcd");
        assert_eq!(u.actor, "user:reception");
        assert_eq!(k.idempotency_scope(), "key:7");
        assert_eq!(u.idempotency_scope(), "key:-3");
    }

    #[test]
    fn only_admins_change_the_global_wording() {
        assert!(key(KeyScope::Admin).may_edit_template(None).is_ok());
        assert!(matches!(
            user(KeyScope::Practice(PracticeId::new(1))).may_edit_template(None),
            Err(Denied::GlobalWording)
        ));
    }
}
