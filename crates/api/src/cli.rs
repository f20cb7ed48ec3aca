//! The command line (SPEC §6). Every command takes the same configuration as `serve`.

use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;

use websessions_domain::audit::ChainPoint;

use crate::config::ConfigArgs;

/// websessions: server-side web sessions.
#[derive(Parser, Debug)]
#[command(name = "websessions", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// What to do; `serve` when none is given.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Migrate the database, then serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Delete expired and ended sessions and expired lockouts; prints how many rows went.
    Purge,
    /// Print the audit trail (R19), oldest first; `verify` checks its chain.
    Audit(AuditArgs),
    /// Print the OpenAPI document.
    Openapi,
}

/// User management. Passwords are read from the first line of standard input when it is not
/// a terminal, and prompted for twice when it is.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create a user.
    Create {
        name: String,
        /// Make the user a superuser.
        #[arg(long)]
        superuser: bool,
    },
    /// Set a user's password; ends all of the user's sessions.
    SetPassword { name: String },
    /// Clear a username's failed logins and lock.
    Unlock { name: String },
}

/// `websessions audit [--since T] [--json]`, or `websessions audit verify`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only records at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    pub since: Option<OffsetDateTime>,
    /// One JSON object per line, as the API shows records.
    #[arg(long)]
    pub json: bool,
}

fn rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "expected an RFC 3339 time such as 2026-12-01T00:00:00Z".to_owned())
}

/// The audit trail's commands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum AuditCommand {
    /// Walk the chain from its anchor: print the anchor and the head (SEQ:HASH), or name the
    /// first broken record and exit 1.
    Verify {
        /// A head noted elsewhere, which the chain must still hold (finds a truncation of the
        /// newest records).
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<ChainPoint>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default_and_flags_work_before_or_after_the_command() {
        let cli = Cli::try_parse_from(["websessions"]).unwrap();
        assert_eq!(cli.command, None);
        let cli = Cli::try_parse_from(["websessions", "serve", "--listen", "127.0.0.1:9"]).unwrap();
        assert_eq!(cli.command, Some(Command::Serve));
        assert_eq!(cli.config.listen, "127.0.0.1:9".parse().unwrap());
        let cli = Cli::try_parse_from(["websessions", "--token-bytes", "32", "purge"]).unwrap();
        assert_eq!(cli.config.token_bytes.get(), 32);
    }

    #[test]
    fn user_commands_take_a_name() {
        let cli =
            Cli::try_parse_from(["websessions", "user", "create", "root", "--superuser"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::User(UserCommand::Create {
                name: "root".into(),
                superuser: true
            }))
        );
        assert!(Cli::try_parse_from(["websessions", "user", "unlock"]).is_err());
    }

    #[test]
    fn r19_audit_prints_or_verifies() {
        let cli = Cli::try_parse_from([
            "websessions",
            "audit",
            "--json",
            "--since",
            "2026-12-01T00:00:00Z",
        ])
        .unwrap();
        let Some(Command::Audit(args)) = cli.command else {
            panic!("not the audit command");
        };
        assert!(args.json);
        assert_eq!(args.command, None);
        assert_eq!(args.since.unwrap().unix_timestamp(), 1_796_083_200);
        let cli = Cli::try_parse_from(["websessions", "audit", "verify"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Audit(AuditArgs {
                command: Some(AuditCommand::Verify { expect_head: None }),
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["websessions", "audit", "--since", "yesterday"]).is_err());
    }
}
