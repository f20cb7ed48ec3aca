//! The audit trail's chain (R19): each record carries SHA-256 of its predecessor's hash and of
//! its own canonical content, so an edit, a deletion or a swap between the chain's anchor and
//! its head is found by walking it (`verify`). Storage appends records and keeps the chain's
//! two ends (`ports::AuditTrail`); what is computed and decided here needs no I/O.
//!
//! The canonical content of a record is one line of JSON, keys in this order, no whitespace,
//! strings escaped as JSON does (serde_json): `{"seq":N,"at":UNIX_SECONDS,"event":"...",
//! "username":S|null,"actor":S|null,"session_id":N|null,"client_ip":S|null,
//! "user_agent":S|null,"details":{...}}`, the details' keys in byte order, each value a string
//! or a whole number. Its hash is SHA-256 over the predecessor's 32-byte hash followed by the
//! content's UTF-8 bytes; the first record's predecessor is 32 zero bytes (or the anchor's hash
//! once retention has deleted the chain's start).

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::InfraError;
use crate::ports::AuditTrail;
use crate::value::{ClientIp, SessionId};

/// A security event's name, as stored and filtered on (R19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    LoginSucceeded,
    LoginPending,
    LoginFailed,
    LockStarted,
    Unlocked,
    Logout,
    SessionsEnded,
    PasswordChanged,
    PasswordReset,
    UserCreated,
    UserDeleted,
    UserDisabled,
    UserEnabled,
    SecondFactorEnrolled,
    SecondFactorRemoved,
    RecoveryCodesGenerated,
    RecoveryCodeUsed,
    FactorsReset,
}

impl AuditEvent {
    /// Every event, in R19's order.
    pub const ALL: [Self; 18] = [
        Self::LoginSucceeded,
        Self::LoginPending,
        Self::LoginFailed,
        Self::LockStarted,
        Self::Unlocked,
        Self::Logout,
        Self::SessionsEnded,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::UserCreated,
        Self::UserDeleted,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::SecondFactorEnrolled,
        Self::SecondFactorRemoved,
        Self::RecoveryCodesGenerated,
        Self::RecoveryCodeUsed,
        Self::FactorsReset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginPending => "login_pending",
            Self::LoginFailed => "login_failed",
            Self::LockStarted => "lock_started",
            Self::Unlocked => "unlocked",
            Self::Logout => "logout",
            Self::SessionsEnded => "sessions_ended",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::UserCreated => "user_created",
            Self::UserDeleted => "user_deleted",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::SecondFactorEnrolled => "second_factor_enrolled",
            Self::SecondFactorRemoved => "second_factor_removed",
            Self::RecoveryCodesGenerated => "recovery_codes_generated",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::FactorsReset => "factors_reset",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == name)
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A detail's value: a reason or a cause, or a count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detail {
    Text(String),
    Count(u64),
}

impl From<&str> for Detail {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<u64> for Detail {
    fn from(count: u64) -> Self {
        Self::Count(count)
    }
}

/// The longest user agent a record keeps, in characters.
pub const USER_AGENT_MAX: usize = 256;

/// The longest username or actor a record keeps, in characters (a username as typed can be
/// longer than any account's).
pub const NAME_MAX: usize = 191;

/// The actor of what the operator does at the machine (the command line, housekeeping).
pub const OPERATOR: &str = "cli";

/// Where a request came from, as a record keeps it: the client's address (R11) and its user
/// agent. Unknown for the operator at the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<ClientIp>,
    pub user_agent: Option<String>,
}

/// `text` cut to `max` characters, with control characters (which some databases refuse,
/// and which would forge lines in a terminal), line and paragraph separators, bidirectional
/// overrides and invisible format characters (which would make a reader see other text than
/// is stored) replaced by U+FFFD.
fn printable(text: &str, max: usize) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c,
                '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}')
    };
    text.chars()
        .take(max)
        .map(|c| if hidden(c) { '\u{FFFD}' } else { c })
        .collect()
}

/// What happened, before it has its place in the chain. Never a password, token, code,
/// secret or hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Whole seconds, like every time storage keeps.
    pub at: OffsetDateTime,
    pub event: AuditEvent,
    /// The username concerned, as typed for failures.
    pub username: Option<String>,
    /// The acting superuser, `cli`, or the user.
    pub actor: Option<String>,
    pub session_id: Option<i64>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: BTreeMap<String, Detail>,
}

impl AuditEntry {
    /// An entry of `event` at `at` (cut to whole seconds), with nothing else yet.
    pub fn new(event: AuditEvent, at: OffsetDateTime) -> Self {
        Self {
            at: at.replace_nanosecond(0).unwrap_or(at),
            event,
            username: None,
            actor: None,
            session_id: None,
            client_ip: None,
            user_agent: None,
            details: BTreeMap::new(),
        }
    }

    /// The client's user agent, cut to `USER_AGENT_MAX` characters.
    pub fn user_agent(mut self, agent: &str) -> Self {
        self.user_agent = Some(printable(agent, USER_AGENT_MAX));
        self
    }

    /// The username concerned (as typed, for failures), cut to `NAME_MAX` characters.
    pub fn username(mut self, name: &str) -> Self {
        self.username = Some(printable(name, NAME_MAX));
        self
    }

    /// Who acted: a superuser's or the user's name, or `OPERATOR`.
    pub fn actor(mut self, actor: &str) -> Self {
        self.actor = Some(printable(actor, NAME_MAX));
        self
    }

    pub fn session(mut self, id: SessionId) -> Self {
        self.session_id = Some(id.get());
        self
    }

    /// Where the request came from.
    pub fn client(mut self, client: &Client) -> Self {
        self.client_ip = client.ip.map(|ip| ip.to_string());
        match &client.user_agent {
            Some(agent) => self.user_agent(agent),
            None => self,
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<Detail>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// How many sessions a `sessions_ended` record ended.
    pub fn count(self, count: u64) -> Self {
        self.detail("count", count)
    }

    /// The details as their canonical JSON object, which storage keeps as it is.
    pub fn details_json(&self) -> String {
        let mut out = String::from("{");
        for (n, (key, value)) in self.details.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&json_string(key));
            out.push(':');
            match value {
                Detail::Text(text) => out.push_str(&json_string(text)),
                Detail::Count(count) => out.push_str(&count.to_string()),
            }
        }
        out.push('}');
        out
    }

    /// Details read back from their canonical JSON; `None` when they are not that.
    pub fn parse_details(text: &str) -> Option<BTreeMap<String, Detail>> {
        let serde_json::Value::Object(object) = serde_json::from_str(text).ok()? else {
            return None;
        };
        object
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => Some((key, Detail::Text(text))),
                serde_json::Value::Number(number) => Some((key, Detail::Count(number.as_u64()?))),
                _ => None,
            })
            .collect()
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn json_or_null<T: fmt::Display>(value: Option<T>, quote: bool) -> String {
    match value {
        None => "null".to_owned(),
        Some(value) if quote => json_string(&value.to_string()),
        Some(value) => value.to_string(),
    }
}

/// A hash of the chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The predecessor of the chain's first record.
    pub const GENESIS: Self = Self([0; 32]);

    /// Lower-case hexadecimal, as printed and compared.
    pub fn hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.0
            .iter()
            .flat_map(|byte| {
                [
                    DIGITS[usize::from(byte >> 4)],
                    DIGITS[usize::from(byte & 15)],
                ]
            })
            .map(char::from)
            .collect()
    }

    /// From 64 hexadecimal digits.
    pub fn parse_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (n, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * n..2 * n + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// From stored bytes; `None` unless there are exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// The largest page of records an operator can ask for.
pub const MAX_AUDIT_PAGE: u64 = 1_000;

/// Which records an operator reads (R19), in sequence order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records naming this username (as stored: typed, for failures).
    pub username: Option<String>,
    pub event: Option<AuditEvent>,
    /// Only records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only records before this time.
    pub until: Option<OffsetDateTime>,
    /// Only records after this sequence number: the `next` of the previous page.
    pub after: Option<u64>,
    /// 1 to `MAX_AUDIT_PAGE`.
    pub limit: u64,
}

/// A page of records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<u64>,
}

/// A record in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub entry: AuditEntry,
    pub prev_hash: ChainHash,
    pub hash: ChainHash,
}

impl AuditRecord {
    /// `entry` as record `seq`, linked to `prev`.
    pub fn link(seq: u64, entry: AuditEntry, prev: ChainHash) -> Self {
        let hash = link_hash(prev, &canonical(seq, &entry));
        Self {
            seq,
            entry,
            prev_hash: prev,
            hash,
        }
    }
}

impl AuditRecord {
    /// The record as R19 shows it (the API and `websessions audit --json`): `{seq, at (RFC
    /// 3339), event, username, actor, session_id, client_ip, user_agent, details, prev_hash,
    /// hash}`, hashes in lower-case hexadecimal.
    pub fn to_json(&self) -> serde_json::Value {
        let entry = &self.entry;
        let at = entry
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let details: serde_json::Map<String, serde_json::Value> = entry
            .details
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Detail::Text(text) => serde_json::Value::from(text.as_str()),
                    Detail::Count(count) => serde_json::Value::from(*count),
                };
                (key.clone(), value)
            })
            .collect();
        serde_json::json!({
            "seq": self.seq,
            "at": at,
            "event": entry.event.as_str(),
            "username": entry.username,
            "actor": entry.actor,
            "session_id": entry.session_id,
            "client_ip": entry.client_ip,
            "user_agent": entry.user_agent,
            "details": details,
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        })
    }
}

/// A record as storage read it: whole, or not readable as one (an unknown event, details
/// that are not canonical, a hash of the wrong length: it was changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    Record(Box<AuditRecord>),
    Unreadable { seq: u64 },
}

impl Stored {
    pub fn seq(&self) -> u64 {
        match self {
            Self::Record(record) => record.seq,
            Self::Unreadable { seq } => *seq,
        }
    }
}

/// The canonical content of record `seq` (see the module's documentation).
pub fn canonical(seq: u64, entry: &AuditEntry) -> String {
    format!(
        "{{\"seq\":{seq},\"at\":{at},\"event\":{event},\"username\":{username},\"actor\":{actor},\
         \"session_id\":{session},\"client_ip\":{ip},\"user_agent\":{agent},\"details\":{details}}}",
        at = entry.at.unix_timestamp(),
        event = json_string(entry.event.as_str()),
        username = json_or_null(entry.username.as_deref(), true),
        actor = json_or_null(entry.actor.as_deref(), true),
        session = json_or_null(entry.session_id, false),
        ip = json_or_null(entry.client_ip.as_deref(), true),
        agent = json_or_null(entry.user_agent.as_deref(), true),
        details = entry.details_json(),
    )
}

/// SHA-256 over the predecessor's hash and a record's canonical content.
pub fn link_hash(prev: ChainHash, canonical: &str) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(prev.0);
    hasher.update(canonical.as_bytes());
    ChainHash(hasher.finalize().into())
}

/// A place in the chain: a record's sequence number and hash (the anchor's: the last record
/// retention deleted, or 0 and `GENESIS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPoint {
    pub seq: u64,
    pub hash: ChainHash,
}

impl ChainPoint {
    pub const START: Self = Self {
        seq: 0,
        hash: ChainHash::GENESIS,
    };
}

impl std::str::FromStr for ChainPoint {
    type Err = &'static str;

    /// `SEQ:HASH`, as `Display` writes it and `--expect-head` takes it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = text.split_once(':').ok_or("expected SEQ:HASH")?;
        Ok(Self {
            seq: seq.parse().map_err(|_| "SEQ is not a whole number")?,
            hash: ChainHash::parse_hex(hash).ok_or("HASH is not 64 hexadecimal digits")?,
        })
    }
}

impl fmt::Display for ChainPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash.hex())
    }
}

/// The chain's two ends as storage keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainEnds {
    pub anchor: ChainPoint,
    pub head: ChainPoint,
}

/// Why a chain does not verify; `seq` is the first record found broken (or missing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("record {seq} is missing (the records after {after} do not follow on)")]
    Missing { seq: u64, after: u64 },
    #[error("record {seq} does not name its predecessor's hash")]
    Unlinked { seq: u64 },
    #[error("record {seq} was changed: its content does not hash to its hash")]
    Changed { seq: u64 },
    #[error("the chain ends at {found}, not at the head storage keeps, {kept}")]
    HeadMismatch { found: ChainPoint, kept: ChainPoint },
    #[error("record {seq} lies at or before the anchor {anchor}, where no record can be")]
    BeforeAnchor { seq: u64, anchor: ChainPoint },
    #[error("the chain does not hold the expected head {expected} (it ends at {found})")]
    NotTheExpectedHead {
        expected: ChainPoint,
        found: ChainPoint,
    },
}

/// Walks records in sequence order from an anchor, checking each link.
#[derive(Clone, Debug)]
pub struct Walk {
    last: ChainPoint,
}

impl Walk {
    pub fn from(anchor: ChainPoint) -> Self {
        Self { last: anchor }
    }

    /// The next record in sequence order.
    pub fn step(&mut self, stored: &Stored) -> Result<(), Broken> {
        let expected = self.last.seq + 1;
        if stored.seq() != expected {
            return Err(Broken::Missing {
                seq: expected,
                after: self.last.seq,
            });
        }
        let Stored::Record(record) = stored else {
            return Err(Broken::Changed { seq: expected });
        };
        if record.prev_hash != self.last.hash {
            return Err(Broken::Unlinked { seq: record.seq });
        }
        if link_hash(record.prev_hash, &canonical(record.seq, &record.entry)) != record.hash {
            return Err(Broken::Changed { seq: record.seq });
        }
        self.last = ChainPoint {
            seq: record.seq,
            hash: record.hash,
        };
        Ok(())
    }

    /// The last record walked (the anchor before any).
    pub fn last(&self) -> ChainPoint {
        self.last
    }
}

/// What `verify` found: the anchor it started from, the head it reached, how many records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub anchor: ChainPoint,
    pub head: ChainPoint,
    pub records: u64,
}

/// Why `verify` stopped.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] Broken),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Records `verify` reads at a time.
pub const VERIFY_BATCH: u64 = 1_000;

/// Walks the whole chain from its anchor (R19): every record follows on from its predecessor
/// and hashes to its hash, the last one is the head storage keeps, and, when given, the chain
/// holds `expected` (a head noted elsewhere: the newest records were not cut off).
pub async fn verify(
    trail: &dyn AuditTrail,
    expected: Option<ChainPoint>,
) -> Result<Verified, VerifyError> {
    let ends = trail.ends().await?;
    // Retention deleted everything up to the anchor: a record there was put there since.
    let first = trail
        .page(&AuditFilter {
            limit: 1,
            ..AuditFilter::default()
        })
        .await?;
    if let Some(stored) = first.first().filter(|s| s.seq() <= ends.anchor.seq) {
        return Err(Broken::BeforeAnchor {
            seq: stored.seq(),
            anchor: ends.anchor,
        }
        .into());
    }
    let mut walk = Walk::from(ends.anchor);
    let mut records = 0;
    let mut holds_expected = expected.is_none_or(|point| point == ends.anchor);
    loop {
        let batch = trail.after(walk.last().seq, VERIFY_BATCH).await?;
        let full = batch.len() as u64 == VERIFY_BATCH;
        for record in &batch {
            walk.step(record)?;
            records += 1;
            if expected.is_some_and(|point| point == walk.last()) {
                holds_expected = true;
            }
        }
        if !full {
            break;
        }
    }
    let found = walk.last();
    if let Some(expected) = expected.filter(|_| !holds_expected) {
        return Err(Broken::NotTheExpectedHead { expected, found }.into());
    }
    if found != ends.head {
        return Err(Broken::HeadMismatch {
            found,
            kept: ends.head,
        }
        .into());
    }
    Ok(Verified {
        anchor: ends.anchor,
        head: found,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(n: u64) -> AuditEntry {
        let mut entry = AuditEntry::new(
            AuditEvent::LoginFailed,
            datetime!(2026-12-08 10:00:00.5 UTC),
        )
        .user_agent("curl/8 \"quoted\" é");
        entry.username = Some(format!("user{n}"));
        entry.client_ip = Some("192.0.2.1".into());
        entry.session_id = Some(7);
        entry
            .details
            .insert("reason".into(), Detail::Text("bad_credentials".into()));
        entry.details.insert("count".into(), Detail::Count(n));
        entry
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = ChainHash::GENESIS;
        (1..=n)
            .map(|seq| {
                let record = AuditRecord::link(seq, entry(seq), prev);
                prev = record.hash;
                record
            })
            .collect()
    }

    fn walk(records: &[AuditRecord]) -> Result<ChainPoint, Broken> {
        let mut walk = Walk::from(ChainPoint::START);
        for record in records {
            walk.step(&Stored::Record(Box::new(record.clone())))?;
        }
        Ok(walk.last())
    }

    #[test]
    fn r19_the_canonical_content_is_one_line_of_json_in_the_documented_order() {
        let text = canonical(3, &entry(3));
        assert_eq!(
            text,
            "{\"seq\":3,\"at\":1796724000,\"event\":\"login_failed\",\"username\":\"user3\",\
             \"actor\":null,\"session_id\":7,\"client_ip\":\"192.0.2.1\",\
             \"user_agent\":\"curl/8 \\\"quoted\\\" é\",\
             \"details\":{\"count\":3,\"reason\":\"bad_credentials\"}}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["user_agent"], "curl/8 \"quoted\" é");
    }

    #[test]
    fn r19_details_read_back_are_the_details_written() {
        let written = entry(9);
        let read = AuditEntry::parse_details(&written.details_json()).unwrap();
        assert_eq!(read, written.details);
        assert_eq!(AuditEntry::parse_details("{\"x\":[1]}"), None);
        assert_eq!(AuditEntry::parse_details("[]"), None);
    }

    #[test]
    fn r19_what_a_client_typed_cannot_hide_or_forge_text() {
        let entry = AuditEntry::new(AuditEvent::LoginFailed, OffsetDateTime::UNIX_EPOCH)
            .username("a\tb\u{2028}c\u{202E}d\u{200B}e\u{0}f é")
            .user_agent("x\r\ny");
        assert_eq!(
            entry.username.as_deref(),
            Some("a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e\u{FFFD}f é")
        );
        assert_eq!(entry.user_agent.as_deref(), Some("x\u{FFFD}\u{FFFD}y"));
    }

    #[test]
    fn r19_a_user_agent_is_cut_to_256_characters() {
        let entry = AuditEntry::new(AuditEvent::Logout, OffsetDateTime::UNIX_EPOCH)
            .user_agent(&"é".repeat(300));
        assert_eq!(entry.user_agent.unwrap().chars().count(), USER_AGENT_MAX);
    }

    #[test]
    fn r19_an_untouched_chain_walks_to_its_last_record() {
        let records = chain(5);
        assert_eq!(
            walk(&records),
            Ok(ChainPoint {
                seq: 5,
                hash: records[4].hash
            })
        );
    }

    #[test]
    fn r19_an_edit_is_found_at_the_record_edited() {
        let mut records = chain(5);
        records[2].entry.username = Some("mallory".into());
        assert_eq!(walk(&records), Err(Broken::Changed { seq: 3 }));
        // Rehashing the edited record breaks the next one's link instead.
        let mut records = chain(5);
        records[2].entry.username = Some("mallory".into());
        records[2] = AuditRecord::link(3, records[2].entry.clone(), records[2].prev_hash);
        assert_eq!(walk(&records), Err(Broken::Unlinked { seq: 4 }));
    }

    #[test]
    fn r19_an_unreadable_record_is_found_as_changed() {
        let records = chain(3);
        let mut walk = Walk::from(ChainPoint::START);
        walk.step(&Stored::Record(Box::new(records[0].clone())))
            .unwrap();
        assert_eq!(
            walk.step(&Stored::Unreadable { seq: 2 }),
            Err(Broken::Changed { seq: 2 })
        );
    }

    #[test]
    fn r19_a_deletion_and_a_swap_are_found() {
        let mut records = chain(5);
        records.remove(1);
        assert_eq!(walk(&records), Err(Broken::Missing { seq: 2, after: 1 }));
        let mut records = chain(5);
        let (second, third) = (records[1].entry.clone(), records[2].entry.clone());
        records[1].entry = third;
        records[2].entry = second;
        assert_eq!(walk(&records), Err(Broken::Changed { seq: 2 }));
    }

    #[test]
    fn r19_hashes_print_and_parse_as_64_hex_digits() {
        let hash = chain(1)[0].hash;
        assert_eq!(hash.hex().len(), 64);
        assert_eq!(ChainHash::parse_hex(&hash.hex()), Some(hash));
        assert_eq!(ChainHash::parse_hex("zz"), None);
        let point = ChainPoint { seq: 7, hash };
        assert_eq!(point.to_string().parse(), Ok(point));
        assert!("7".parse::<ChainPoint>().is_err());
        assert!(format!("x:{}", hash.hex()).parse::<ChainPoint>().is_err());
        assert_eq!(ChainHash::parse_hex(&"é".repeat(32)), None);
        assert_eq!(
            AuditEvent::parse("login_failed"),
            Some(AuditEvent::LoginFailed)
        );
        assert!(
            AuditEvent::ALL
                .iter()
                .all(|event| AuditEvent::parse(event.as_str()) == Some(*event))
        );
    }
}
