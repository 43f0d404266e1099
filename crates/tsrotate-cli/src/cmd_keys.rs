//! `tsrotate keys list`: every key the caller may see, the soonest to expire first.
//!
//! `keys` is a group so that more key commands can join `list` later. The fetching and the
//! error hints here are shared with `tsrotate audit`, which reads the same list.

use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tsrotate::api::{self, Key};
use tsrotate::hygiene::{self, Kind};
use tsrotate::key::KeyId;

use crate::args::{Format, GlobalArgs};
use crate::exit::{ExitStatus, UserError};
use crate::settings::ApiSettings;

/// What an OAuth client is asked for: reading every kind of key, nothing more. `all:read` or
/// `all` on the client covers them.
pub(crate) const READ_SCOPES: [&str; 4] = [
    "auth_keys:read",
    "oauth_keys:read",
    "federated_keys:read",
    "api_access_tokens:read",
];

/// Arguments of `tsrotate keys`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Every key you may see: kind, ID, owner, tags, expiry and days left, and whether a
    /// tsrotate rotation minted it. Sorted by expiry; `!` marks keys expiring within 14 days.
    /// Federated identities follow with the issuer, subject pattern, audience and claim rules
    /// they accept.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Every key of the tailnet your credential may read. Without it, the API's default view:
    /// a personal API access token sees its user's keys, an OAuth client the OAuth clients.
    #[arg(long)]
    all: bool,
    /// Count days left as of this time (RFC 3339) instead of now (the API server's time).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    as_of: Option<OffsetDateTime>,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    match &args.command {
        Command::List(list) => run_list(global, list).await,
    }
}

/// One key as `keys list` shows it.
#[derive(Serialize)]
struct Row {
    key_id: KeyId,
    kind: Kind,
    description: Option<String>,
    /// The user ID, or `tailnet` for keys created by a trust credential.
    owner: String,
    /// Auth keys: the tags their devices get; trust credentials: the tags they may assign.
    tags: Vec<String>,
    scopes: Vec<String>,
    reusable: Option<bool>,
    ephemeral: Option<bool>,
    preauthorized: Option<bool>,
    #[serde(with = "time::serde::rfc3339::option")]
    created: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires: Option<OffsetDateTime>,
    /// Whole days until expiry (negative once expired); `null` for keys that never expire.
    days_left: Option<i64>,
    expiring_soon: bool,
    expired: bool,
    minted_by_tsrotate: bool,
    rotation_id: Option<String>,
    /// Federated identities only: the tokens they accept (none of it is a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    federation: Option<api::Federation>,
}

#[derive(Serialize)]
struct Listing {
    tailnet: String,
    all: bool,
    #[serde(with = "time::serde::rfc3339")]
    as_of: OffsetDateTime,
    expiring_within_days: i64,
    keys: Vec<Row>,
}

async fn run_list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<ExitStatus> {
    let (client, keys) = fetch(global, args.all).await?;
    let now = crate::cmd_audit::as_of(args.as_of, &client);
    let window = hygiene::Options::default().expiring_within;
    let listing = Listing {
        tailnet: client.tailnet().to_owned(),
        all: args.all,
        as_of: now,
        expiring_within_days: window.whole_days(),
        keys: rows(&keys, now, window),
    };
    if global.format == Format::Human {
        crate::cmd_audit::write_stdout(human(&listing).as_bytes())?;
    } else {
        crate::cmd_audit::print_json(&listing)?;
    }
    Ok(ExitStatus::Success)
}

fn rows(keys: &[Key], now: OffsetDateTime, window: time::Duration) -> Vec<Row> {
    let mut rows: Vec<Row> = keys.iter().map(|k| row(k, now, window)).collect();
    // Soonest expiry first; keys that never expire last.
    rows.sort_by(|a, b| {
        (a.expires.is_none(), a.expires, a.kind, &a.key_id).cmp(&(
            b.expires.is_none(),
            b.expires,
            b.kind,
            &b.key_id,
        ))
    });
    rows
}

fn row(key: &Key, now: OffsetDateTime, window: time::Duration) -> Row {
    let kind = Kind::of(key);
    let caps = key
        .capabilities
        .is_some()
        .then(|| key.device_capabilities());
    let rotation_id = key
        .description
        .as_deref()
        .and_then(hygiene::rotation_marker)
        .map(str::to_owned);
    let left = key.expires.map(|e| e - now);
    Row {
        key_id: key.id.clone(),
        kind,
        description: key.description.clone().filter(|d| !d.is_empty()),
        owner: if key.is_tailnet_owned() {
            "tailnet".to_owned()
        } else {
            key.user_id.clone().unwrap_or_default()
        },
        tags: caps
            .as_ref()
            .map_or_else(|| key.tags.clone(), |c| c.tags.clone()),
        scopes: key.scopes.clone(),
        reusable: caps.as_ref().map(|c| c.reusable),
        ephemeral: caps.as_ref().map(|c| c.ephemeral),
        preauthorized: caps.as_ref().map(|c| c.preauthorized),
        created: key.created,
        expires: key.expires,
        days_left: left.map(time::Duration::whole_days),
        expiring_soon: left.is_some_and(|l| l <= window),
        expired: key.is_dead_at(now),
        minted_by_tsrotate: rotation_id.is_some(),
        rotation_id,
        federation: (kind == Kind::FederatedIdentity).then(|| key.federation.clone()),
    }
}

/// The table: readable without colour, `!` beside days left for keys expiring soon.
fn human(listing: &Listing) -> String {
    if listing.keys.is_empty() {
        return "No keys.\n".to_owned();
    }
    let header = [
        "EXPIRES",
        "LEFT",
        "KIND",
        "KEY ID",
        "OWNER",
        "TAGS",
        "TSROTATE",
        "DESCRIPTION",
    ];
    let cells: Vec<Vec<String>> = listing
        .keys
        .iter()
        .map(|r| {
            let left = match r.days_left {
                None => "-".to_owned(),
                Some(_) if r.expired => "expired !".to_owned(),
                Some(d) if r.expiring_soon => format!("{d}d !"),
                Some(d) => format!("{d}d"),
            };
            vec![
                r.expires.map_or_else(|| "never".to_owned(), date),
                left,
                r.kind.slug().to_owned(),
                r.key_id.to_string(),
                r.owner.clone(),
                dash_if_empty(&r.tags.join(",")),
                r.rotation_id.clone().unwrap_or_else(|| "-".to_owned()),
                dash_if_empty(r.description.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    let mut out = crate::table::render(&header, &cells);
    out.push_str(&federated(listing));
    let soon = listing.keys.iter().filter(|r| r.expiring_soon).count();
    let minted = listing.keys.iter().filter(|r| r.minted_by_tsrotate).count();
    let _ = write!(
        out,
        "\n{} {}; {soon} expiring within {} days (marked !); {minted} minted by tsrotate.\n",
        listing.keys.len(),
        if listing.keys.len() == 1 {
            "key"
        } else {
            "keys"
        },
        listing.expiring_within_days,
    );
    out
}

/// Federated identities: which tokens each accepts, below the keys (they have no expiry or
/// secret, so the key table says little about them).
fn federated(listing: &Listing) -> String {
    let cells: Vec<Vec<String>> = listing
        .keys
        .iter()
        .filter_map(|r| Some((r, r.federation.as_ref()?)))
        .map(|(r, f)| {
            let rules = f
                .custom_claim_rules
                .iter()
                .flatten()
                .map(|(claim, pattern)| format!("{claim}={pattern}"))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                r.key_id.to_string(),
                dash_if_empty(f.issuer.as_deref().unwrap_or_default()),
                dash_if_empty(f.subject.as_deref().unwrap_or_default()),
                dash_if_empty(f.audience.as_deref().unwrap_or_default()),
                dash_if_empty(&rules),
            ]
        })
        .collect();
    if cells.is_empty() {
        return String::new();
    }
    let header = [
        "FEDERATED IDENTITY",
        "ISSUER",
        "SUBJECT",
        "AUDIENCE",
        "CLAIM RULES",
    ];
    format!("\n{}", crate::table::render(&header, &cells))
}

fn dash_if_empty(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// `2026-12-01`, for tables.
fn date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The keys the caller may see, with full details.
pub(crate) async fn fetch(
    global: &GlobalArgs,
    all: bool,
) -> anyhow::Result<(api::Client, Vec<Key>)> {
    let client = ApiSettings::configured(global, &READ_SCOPES)?.require_client()?;
    let listed = client
        .list_keys(all)
        .await
        .map_err(|e| read_error("listing the tailnet's keys", e))?;
    let mut keys = Vec::with_capacity(listed.len());
    for key in listed {
        // Older API versions list bare IDs (tailscale-api.md §4.1): ask for the details then.
        if key.key_type.is_none() && key.created.is_none() && key.description.is_none() {
            match client.get_key(&key.id).await {
                Ok(full) => keys.push(full),
                // Gone between the list and the read.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(read_error(&format!("reading key {}", key.id), e)),
            }
        } else {
            keys.push(key);
        }
    }
    Ok((client, keys))
}

/// An API error while reading keys, with a hint where the person can act on it.
pub(crate) fn read_error(doing: &str, e: api::Error) -> anyhow::Error {
    let hint = match &e {
        api::Error::Unauthorized { .. } => Some(
            "the API credential is unknown, revoked or expired: check TAILSCALE_OAUTH_CLIENT_SECRET or TAILSCALE_API_KEY",
        ),
        api::Error::Forbidden { .. } => Some(
            "to see every key, an OAuth client needs `all:read`, or `auth_keys:read`, `oauth_keys:read`, `federated_keys:read` and `api_access_tokens:read`",
        ),
        api::Error::Config(_) => Some("check TAILSCALE_BASE_URL"),
        _ => None,
    };
    match hint {
        Some(hint) => UserError::new(format!("{doing}: {e}")).hint(hint).into(),
        None => anyhow::Error::from(e).context(doing.to_owned()),
    }
}

/// Parse `--as-of`: an RFC 3339 time.
pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|_| format!("invalid time `{s}`: expected RFC 3339, e.g. 2026-12-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;
    use tsrotate::api::KeyType;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00:00 UTC);

    fn key(id: &str, key_type: KeyType, expires_in_days: Option<i64>) -> Key {
        Key {
            id: id.parse().unwrap(),
            key_type: Some(key_type),
            description: None,
            created: Some(NOW - Duration::days(1)),
            updated: None,
            expires: expires_in_days.map(|d| NOW + Duration::days(d) + Duration::hours(1)),
            revoked: None,
            expiry_seconds: None,
            invalid: false,
            capabilities: None,
            scopes: Vec::new(),
            tags: Vec::new(),
            user_id: Some("uAlice1CNTRL".to_owned()),
            federation: api::Federation::default(),
        }
    }

    #[test]
    fn rows_sort_by_expiry_with_never_last() {
        let mut minted = key("kMinted1CNTRL", KeyType::Auth, Some(3));
        minted.description = Some("web tsrotate r20261101000000abcdef".to_owned());
        let keys = [
            key("kClient1CNTRL", KeyType::Client, None),
            key("kLate1CNTRL", KeyType::Auth, Some(60)),
            minted,
            key("kEdge1CNTRL", KeyType::Api, Some(14)),
        ];
        let rows = rows(&keys, NOW, Duration::days(14));
        let order: Vec<&str> = rows.iter().map(|r| r.key_id.as_str()).collect();
        assert_eq!(
            order,
            [
                "kMinted1CNTRL",
                "kEdge1CNTRL",
                "kLate1CNTRL",
                "kClient1CNTRL"
            ]
        );
        assert_eq!(rows[0].days_left, Some(3));
        assert!(rows[0].expiring_soon && rows[0].minted_by_tsrotate);
        assert_eq!(
            rows[0].rotation_id.as_deref(),
            Some("r20261101000000abcdef")
        );
        // 14 days and an hour: outside a 14-day window.
        assert!(!rows[1].expiring_soon);
        assert_eq!(rows[3].days_left, None);
        assert!(!rows[3].expiring_soon && !rows[3].minted_by_tsrotate);
    }

    #[test]
    fn the_table_marks_soon_and_never_without_colour() {
        let keys = [
            key("kSoon1CNTRL", KeyType::Auth, Some(2)),
            key("kClient1CNTRL", KeyType::Client, None),
        ];
        let listing = Listing {
            tailnet: "-".to_owned(),
            all: true,
            as_of: NOW,
            expiring_within_days: 14,
            keys: rows(&keys, NOW, Duration::days(14)),
        };
        let text = human(&listing);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("EXPIRES     LEFT  KIND"), "{text}");
        assert!(lines[1].starts_with("2026-12-03  2d !  auth-key"), "{text}");
        assert!(
            lines[2].starts_with("never       -     oauth-client"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "no escape codes");
        assert_eq!(
            lines.last().copied(),
            Some("2 keys; 1 expiring within 14 days (marked !); 0 minted by tsrotate.")
        );
    }

    #[test]
    fn federated_identities_show_what_they_accept() {
        let mut identity = key("kFed1CNTRL", KeyType::Federated, None);
        identity.federation = api::Federation {
            issuer: Some("https://token.actions.githubusercontent.com".to_owned()),
            subject: Some("repo:acme/infra:ref:refs/heads/main".to_owned()),
            audience: Some("api.tailscale.com/abc".to_owned()),
            custom_claim_rules: Some([("repository_owner".to_owned(), "acme".to_owned())].into()),
        };
        let keys = [key("kSoon1CNTRL", KeyType::Auth, Some(2)), identity];
        let listing = Listing {
            tailnet: "-".to_owned(),
            all: true,
            as_of: NOW,
            expiring_within_days: 14,
            keys: rows(&keys, NOW, Duration::days(14)),
        };
        let text = human(&listing);
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("FEDERATED IDENTITY"))
            .expect(&text);
        assert_eq!(
            lines[at + 1],
            "kFed1CNTRL          https://token.actions.githubusercontent.com  repo:acme/infra:ref:refs/heads/main  api.tailscale.com/abc  repository_owner=acme"
        );
        let json = serde_json::to_value(&listing.keys).unwrap();
        assert_eq!(
            json[1]["federation"]["subject"],
            "repo:acme/infra:ref:refs/heads/main"
        );
        assert!(
            json[0].get("federation").is_none(),
            "only federated identities"
        );
        // Without federated identities the table is as before.
        let plain = Listing {
            keys: rows(&keys[..1], NOW, Duration::days(14)),
            ..listing
        };
        assert!(!human(&plain).contains("FEDERATED"));
    }

    #[test]
    fn times_parse_as_rfc3339_only() {
        assert_eq!(
            parse_time("2026-12-01T12:00:00Z"),
            Ok(datetime!(2026-12-01 12:00:00 UTC))
        );
        assert!(parse_time("yesterday").is_err());
    }
}
