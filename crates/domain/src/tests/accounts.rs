//! Self-service, session administration and user administration: who may act, and that
//! every multi-session ending runs in an account transaction on the user's row.

use mockall::predicate::eq;
use time::Duration;

use super::*;
use crate::admin::{SessionAdmin, SessionFilter};
use crate::error::{
    AccessError, CreateUserError, EndSessionError, LoginRequired, ResetPasswordError, UserError,
};
use crate::me::SelfService;
use crate::model::Superuser;
use crate::ports::{Created, LockoutPurge, Owner, Sweep};
use crate::users::UserAdmin;
use crate::{Password, SessionQuery};

fn logged_in(superuser: bool) -> SessionRecord {
    let mut record = session(1, 1, Duration::ZERO);
    let mut user = as_session_user(&alice());
    user.superuser = superuser;
    record.user = Some(user);
    record
}

fn me() -> crate::Me {
    let session = logged_in(false);
    let user = session.user.clone().unwrap();
    crate::Me {
        session,
        user,
        client: crate::audit::Client {
            ip: Some(ip("192.0.2.1")),
            user_agent: Some("test-agent".into()),
        },
    }
}

fn root() -> Superuser {
    Superuser::of(&logged_in(true)).unwrap()
}

// ---- who may act ----

#[tokio::test]
async fn self_service_needs_a_valid_session_of_a_logged_in_user() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::ZERO));
    h.sessions
        .expect_find()
        .with(eq(sid(2)))
        .returning(|_| Ok(None));
    let (service, _) = h.build();
    assert!(matches!(
        service.me(&presented(2, 1)).await,
        Err(LoginRequired::NoSession)
    ));
    assert!(matches!(
        service.me(&presented(1, 1)).await,
        Err(LoginRequired::NotLoggedIn)
    ));
    let (service, _) = Harness::new().with_session(logged_in(false)).build();
    let found = service.me(&presented(1, 1)).await.unwrap();
    assert_eq!(found.user, as_session_user(&alice()));
}

#[tokio::test]
async fn administration_needs_a_superusers_session() {
    let (service, _) = Harness::new().with_session(logged_in(false)).build();
    assert!(matches!(
        service.authorize(&presented(1, 1)).await,
        Err(AccessError::NotSuperuser)
    ));
    let (service, _) = Harness::new().with_session(logged_in(true)).build();
    let superuser = service.authorize(&presented(1, 1)).await.unwrap();
    assert_eq!(superuser.username().map(Username::as_str), Some("alice"));
    assert_eq!(Superuser::operator().username(), None);
}

// ---- self-service ----

#[tokio::test]
async fn ending_an_own_session_names_its_owner_and_looks_alike_when_refused() {
    for ended in [true, false] {
        let mut h = Harness::new();
        h.sessions
            .expect_end_by_id()
            .withf(|id, owner, cutoffs, record| {
                *id == sid(3)
                    && *owner == Owner::User(UserId(7))
                    && *cutoffs == SessionPolicy::default().cutoffs(NOW)
                    && record.as_ref().map(describe).as_deref()
                        == Some("sessions_ended:alice:cause=revoked,count=1")
            })
            .times(1)
            .returning(move |_, _, _, _| Ok(ended));
        let (service, events) = h.build();
        let result = service.end_my_session(&me(), sid(3)).await;
        if ended {
            assert!(result.is_ok());
            assert_eq!(events.take(), ["ended:revoked:1", "audited:sessions_ended"]);
        } else {
            assert!(matches!(result, Err(EndSessionError::NotFound)));
            assert!(events.take().is_empty());
        }
    }
}

#[tokio::test]
async fn ending_my_other_sessions_spares_the_current_one_under_the_users_row_lock() {
    let mut h = Harness::new();
    h.script.ended = 4;
    let (service, events) = h.build();
    assert_eq!(service.end_my_other_sessions(&me()).await.unwrap(), 4);
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:exists",
            "tx:end_sessions:user7:any:except:1",
            "tx:audit:sessions_ended:alice:cause=revoked,count=4",
            "tx:commit",
            "audited:sessions_ended",
            "ended:revoked:4",
        ]
    );
}

#[tokio::test]
async fn my_sessions_lists_only_the_users_valid_sessions() {
    let mut h = Harness::new();
    h.sessions
        .expect_list()
        .withf(|q, cutoffs| {
            q.user == Some(UserId(7))
                && q.limit == 500
                && *cutoffs == SessionPolicy::default().cutoffs(NOW)
        })
        .returning(|_, _| Ok(vec![logged_in(false)]));
    let (service, _) = h.build();
    assert_eq!(service.my_sessions(&me()).await.unwrap().len(), 1);
}

// ---- session administration ----

#[tokio::test]
async fn admin_pages_ask_for_one_more_and_name_the_next_page() {
    for (found, next) in [(3, Some(2)), (2, None)] {
        let mut h = Harness::new();
        h.sessions
            .expect_list()
            .withf(|q: &SessionQuery, _| q.limit == 3 && q.after == Some(sid(10)))
            .returning(move |_, _| {
                Ok((1..=found)
                    .map(|id| session(id, 1, Duration::ZERO))
                    .collect())
            });
        let (service, _) = h.build();
        let filter = SessionFilter {
            user: None,
            active_since: None,
            after: Some(sid(10)),
            limit: 2,
        };
        let page = service.sessions(&root(), filter).await.unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next, next.map(sid));
    }
}

#[tokio::test]
async fn admin_filter_on_a_name_without_an_account_matches_nothing() {
    let mut h = Harness::new();
    h.users.expect_find_by_username().returning(|_| Ok(None));
    // No `list` expectation: a query would panic.
    let (service, _) = h.build();
    for name in ["ghost", "not a name"] {
        let filter = SessionFilter {
            user: Some(name.into()),
            active_since: None,
            after: None,
            limit: 100,
        };
        let page = service.sessions(&root(), filter).await.unwrap();
        assert!(page.items.is_empty() && page.next.is_none());
    }
}

#[tokio::test]
async fn r8_maintenance_runs_over_the_whole_backlog_and_reports_it() {
    let mut h = Harness::new();
    h.sessions
        .expect_purge()
        .withf(|cutoffs, batch, sweep, record| {
            *cutoffs == SessionPolicy::default().cutoffs(NOW)
                && *batch == 1000
                && *sweep == Sweep::All
                && describe(record) == "sessions_ended:-:cause=expired"
        })
        .returning(|_, _, _, _| Ok(5));
    h.lockouts
        .expect_purge()
        .with(eq(NOW), eq(1000), eq(Sweep::All))
        .returning(|_, _, _| {
            Ok(LockoutPurge {
                expired_locks: 2,
                orphan_failures: 3,
            })
        });
    let (service, events) = h.build();
    let report = service.purge(&root()).await.unwrap();
    assert_eq!(
        (
            report.expired_sessions,
            report.expired_lockouts,
            report.orphan_failures
        ),
        (5, 2, 3)
    );
    assert_eq!(events.take(), ["ended:expired:5", "purged:10"]);
}

#[tokio::test]
async fn revoking_ends_any_valid_session_by_id() {
    let mut h = Harness::new();
    h.sessions.expect_find().returning(|_| Ok(None));
    let (service, _) = h.build();
    assert!(matches!(
        service.revoke(&root(), sid(9)).await,
        Err(EndSessionError::NotFound)
    ));
    // A user's session ends with its record, naming its owner; an anonymous one names none.
    for user in [true, false] {
        let mut record = logged_in(false);
        if !user {
            record.user = None;
        }
        let mut h = Harness::new().with_session(record);
        h.sessions
            .expect_end_by_id()
            .withf(move |id, owner, cutoffs, record| {
                let (expected_owner, expected_record) = if user {
                    (
                        Owner::User(UserId(7)),
                        Some("sessions_ended:alice:cause=revoked,count=1"),
                    )
                } else {
                    (Owner::Nobody, None)
                };
                *id == sid(1)
                    && *owner == expected_owner
                    && *cutoffs == SessionPolicy::default().cutoffs(NOW)
                    && record.as_ref().map(describe).as_deref() == expected_record
                    && record
                        .as_ref()
                        .is_none_or(|r| r.actor.as_deref() == Some("alice"))
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let (service, _) = h.build();
        service.revoke(&root(), sid(1)).await.unwrap();
    }
}

// ---- user administration ----

#[tokio::test]
async fn r7_an_operator_reset_ends_every_session_in_the_same_transaction() {
    let mut h = Harness::new().with_user(alice());
    h.hasher
        .expect_hash()
        .returning(|_, _| Ok(PasswordHash::new("$argon2id$reset")));
    h.script.ended = 3;
    let (service, events) = h.build();
    let by = Superuser::operator();
    service
        .reset_password(&by, "alice", Password::new("a new password"))
        .await
        .unwrap();
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:exists",
            "tx:end_sessions:user7:any:except:none",
            "tx:set_password:7:$argon2id$reset",
            "tx:audit:password_reset:alice:",
            "tx:audit:sessions_ended:alice:cause=revoked,count=3",
            "tx:commit",
            "audited:password_reset",
            "audited:sessions_ended",
            "ended:revoked:3",
        ]
    );
}

#[tokio::test]
async fn r7_a_reset_the_connection_interrupted_runs_again_whole_and_commits_once() {
    let mut h = Harness::new().with_user(alice());
    h.hasher
        .expect_hash()
        .returning(|_, _| Ok(PasswordHash::new("$argon2id$reset")));
    h.script.ended = 3;
    h.script.interrupting("end_sessions", 1);
    let (service, events) = h.build();
    service
        .reset_password(&root(), "alice", Password::new("a new password"))
        .await
        .unwrap();
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:exists",
            "tx:end_sessions:interrupted",
            "tx:lock_user:7:exists",
            "tx:end_sessions:user7:any:except:none",
            "tx:set_password:7:$argon2id$reset",
            "tx:audit:password_reset:alice:",
            "tx:audit:sessions_ended:alice:cause=revoked,count=3",
            "tx:commit",
            "audited:password_reset",
            "audited:sessions_ended",
            "ended:revoked:3",
        ]
    );
}

#[tokio::test]
async fn a_transaction_interrupted_again_and_again_gives_up_as_unavailable_committing_nothing() {
    let mut h = Harness::new().with_user(alice());
    h.hasher
        .expect_hash()
        .returning(|_, _| Ok(PasswordHash::new("$argon2id$reset")));
    h.script.interrupting("end_sessions", usize::MAX);
    let (service, events) = h.build();
    let result = service
        .reset_password(&root(), "alice", Password::new("a new password"))
        .await;
    assert!(
        matches!(
            result,
            Err(ResetPasswordError::Infra(InfraError::Unavailable(_)))
        ),
        "{result:?}"
    );
    let log = events.take();
    assert!(!log.iter().any(|e| e == "tx:commit"), "{log:?}");
    // The first run and three more.
    let runs = log.iter().filter(|e| *e == "tx:lock_user:7:exists").count();
    assert_eq!(runs, 4, "{log:?}");
}

#[tokio::test]
async fn r7_a_user_deleted_during_a_reset_is_not_found_and_nothing_commits() {
    let mut h = Harness::new().with_user(alice());
    h.hasher
        .expect_hash()
        .returning(|_, _| Ok(PasswordHash::new("$argon2id$reset")));
    h.script.account_unchanged = false;
    let (service, events) = h.build();
    let result = service
        .reset_password(&root(), "alice", Password::new("a new password"))
        .await;
    assert!(matches!(result, Err(ResetPasswordError::NotFound)));
    assert_eq!(events.take(), ["tx:lock_user:7:exists"]);
}

#[tokio::test]
async fn r7_disabling_ends_sessions_and_enabling_does_not() {
    let mut h = Harness::new().with_user(alice());
    h.script.ended = 1;
    let (service, events) = h.build();
    service.set_disabled(&root(), "alice", true).await.unwrap();
    service.set_disabled(&root(), "alice", false).await.unwrap();
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:exists",
            "tx:end_sessions:user7:any:except:none",
            "tx:set_disabled:7:true",
            "tx:audit:user_disabled:alice:",
            "tx:audit:sessions_ended:alice:cause=revoked,count=1",
            "tx:commit",
            "audited:user_disabled",
            "audited:sessions_ended",
            "ended:revoked:1",
            "tx:lock_user:7:exists",
            "tx:set_disabled:7:false",
            "tx:audit:user_enabled:alice:",
            "tx:commit",
            "audited:user_enabled",
        ]
    );
}

#[tokio::test]
async fn r7_deleting_a_user_ends_its_sessions_then_deletes_it() {
    let mut h = Harness::new().with_user(alice());
    h.script.ended = 2;
    // Two rows that had expired and not yet been purged go with the user: recorded as
    // expired sessions (R19), since no record said so before.
    h.script.expired = 3;
    let (service, events) = h.build();
    service.delete_user(&root(), "alice").await.unwrap();
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:exists",
            "tx:end_sessions:user7:any:except:none",
            "tx:delete_user:7",
            "tx:audit:user_deleted:alice:",
            "tx:audit:sessions_ended:alice:cause=revoked,count=2",
            "tx:audit:sessions_ended:alice:cause=expired,count=3",
            "tx:commit",
            "audited:user_deleted",
            "audited:sessions_ended",
            "audited:sessions_ended",
            "ended:revoked:2",
        ]
    );
}

#[tokio::test]
async fn r19_disabling_a_disabled_user_or_unlocking_nothing_records_nothing() {
    let mut h = Harness::new().with_user(alice());
    h.script.changes = false;
    h.lockouts.expect_clear().returning(|_, _| Ok(false));
    let (service, events) = h.build();
    service.set_disabled(&root(), "alice", true).await.unwrap();
    service.unlock(&root(), "alice").await.unwrap();
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:exists",
            "tx:end_sessions:user7:any:except:none",
            "tx:set_disabled:7:true",
            "tx:commit",
        ]
    );
}

#[tokio::test]
async fn operations_on_an_unknown_or_malformed_user_are_not_found() {
    let mut h = Harness::new();
    h.users.expect_find_by_username().returning(|_| Ok(None));
    let (service, _) = h.build();
    for name in ["ghost", "not a name"] {
        assert!(matches!(
            service.user(&root(), name).await,
            Err(UserError::NotFound)
        ));
        assert!(matches!(
            service.delete_user(&root(), name).await,
            Err(UserError::NotFound)
        ));
        assert!(matches!(
            service.set_disabled(&root(), name, true).await,
            Err(UserError::NotFound)
        ));
        assert!(matches!(
            service.end_user_sessions(&root(), name).await,
            Err(UserError::NotFound)
        ));
        assert!(matches!(
            service
                .reset_password(&root(), name, Password::new("long enough 123"))
                .await,
            Err(ResetPasswordError::NotFound)
        ));
    }
    assert!(matches!(
        service.unlock(&root(), "not a name").await,
        Err(UserError::NotFound)
    ));
}

#[tokio::test]
async fn creating_a_user_validates_name_and_password_before_hashing_and_reports_a_taken_name() {
    // No hash expectation: hashing an invalid request would panic.
    let (service, _) = Harness::new().build();
    assert!(matches!(
        service
            .create_user(&root(), "bad name", Password::new("long enough 123"), false)
            .await,
        Err(CreateUserError::InvalidUsername(_))
    ));
    assert!(matches!(
        service
            .create_user(&root(), "bob", Password::new("short"), false)
            .await,
        Err(CreateUserError::Policy(_))
    ));
    let mut h = Harness::new();
    h.hasher
        .expect_hash()
        .returning(|_, _| Ok(PasswordHash::new("$argon2id$bob")));
    h.users.expect_create().returning(|_, _| Ok(Created::Taken));
    let (service, _) = h.build();
    assert!(matches!(
        service
            .create_user(&root(), "bob", Password::new("long enough 123"), false)
            .await,
        Err(CreateUserError::Taken)
    ));
    let (service, _) = Harness::new().saturated().build();
    assert!(matches!(
        service
            .create_user(&root(), "bob", Password::new("long enough 123"), false)
            .await,
        Err(CreateUserError::Saturated(_))
    ));
}
