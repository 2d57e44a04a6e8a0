"""The database schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Alembic migrations in `migrations/versions` must produce exactly this; a test replays them and
compares. Every time is stored as UTC (see `UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite has no BIGINT autoincrement: fall back to INTEGER (its 64-bit rowid) there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; Clarion stores aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


sources = Table(
    "sources",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("cursor", JSON, nullable=False, default=dict),
    Column("last_polled_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("items_seen", BigInteger, nullable=False, default=0),
    Column("notices_ingested", BigInteger, nullable=False, default=0),
    Column("next_poll_at", UTCDateTime),
    # Which worker is polling the source now: exactly one at a time, across hosts.
    Column("lease_owner", String(128)),
    Column("lease_expires_at", UTCDateTime),
)

threads = Table(
    "threads",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # A story belongs to its source: keys are stored as "SOURCE/KEY", so the same key from two
    # sources is two stories (keys stored before 0.12 have no prefix; their `source` scopes them).
    Column("thread_key", String(512), nullable=False, unique=True),
    Column("source", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # active | cancelled | ended
    Column("latest_version", Integer, nullable=False),
    Column("latest_notice_id", BigInteger),
    Column("headline", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, index=True),
)

notices = Table(
    "notices",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("thread_id", BigInteger, ForeignKey("threads.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("identifier", String(512), nullable=False),
    Column("sender", String(512), nullable=False),
    Column("sent", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("msg_type", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("headline", Text, nullable=False),
    Column("expires", UTCDateTime),
    Column("content_hash", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("original", LargeBinary),
    Column("original_content_type", String(128)),
    Column("signature", String(16), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # The message's branch of its story (see docs/stories.md): live until a later message that
    # references it replaces it ("replaced"), or a cancel/end closes it ("closed").
    Column("branch", String(16), nullable=False, server_default="live"),
    # When the alert is over by the clock: its event's end if it has one, else its expiry.
    Column("over_at", UTCDateTime),
    # The notices of the thread this one continues (transitively): replies thread under them.
    Column("ancestors", JSON),
    UniqueConstraint("thread_id", "version"),
    UniqueConstraint("thread_id", "content_hash"),
    Index("ix_notices_sender_identifier_source", "sender", "identifier", "source"),
    Index("ix_notices_received_at", "received_at"),
    Index("ix_notices_source_branch", "source", "branch"),
)

# The messages each notice references, as "sender identifier" keys: a message that arrives
# after a stored one already referenced it is late (it is kept, never posted over newer news).
notice_refs = Table(
    "notice_refs",
    metadata,
    Column("notice_id", BigInteger, ForeignKey("notices.id"), primary_key=True),
    Column("ref", String(1024), primary_key=True),
    Index("ix_notice_refs_ref", "ref"),
)

# Seen is forever: every item a source ever listed, posted or not (a feed's archive at its
# first poll, items too old to post). Only items never seen before are new.
seen_items = Table(
    "seen_items",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("item", String(512), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
)

# Items a source listed that could not be read (a bad date, a missing document): rejected
# one by one with the reason, so that they never hold back the rest of the poll.
rejected_items = Table(
    "rejected_items",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("item", String(512), primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("count", BigInteger, nullable=False, default=1),
    Column("first_at", UTCDateTime, nullable=False),
    Column("last_at", UTCDateTime, nullable=False, index=True),
)

# What a notice can be filtered by, one row per term: "category:met", "area:mtz014",
# "area:ugc=mtz014", "route:5", "entity:component:api", "lang:en", "lang:en-us" (lowercase).
# Feeds and the API filter by joining here, on both databases, instead of reading JSON.
notice_terms = Table(
    "notice_terms",
    metadata,
    Column("notice_id", BigInteger, ForeignKey("notices.id"), primary_key=True),
    Column("term", String(255), primary_key=True),
    Index("ix_notice_terms_term", "term", "notice_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # active | needs_reauth | disabled
    Column("state_reason", Text),
    Column("state_changed_at", UTCDateTime),
    Column("sent_count", BigInteger, nullable=False, default=0),
    Column("failed_count", BigInteger, nullable=False, default=0),
    Column("last_sent_at", UTCDateTime),
    Column("last_error", Text),
    Column("info", JSON, nullable=False, default=dict),
)

deliveries = Table(
    "deliveries",
    metadata,
    # The delivery id is the idempotency key sent to platforms that accept one.
    Column("id", String(36), primary_key=True),
    Column("notice_id", BigInteger, ForeignKey("notices.id"), nullable=False),
    Column("thread_id", BigInteger, ForeignKey("threads.id"), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("msg_type", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", UTCDateTime),
    Column("last_error", Text),
    Column("error_kind", String(16)),
    Column("receipt_id", Text),  # a platform's post id, as long as it is (migration 0017)
    Column("receipt_url", Text),
    Column("receipt", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    # What the platform charges for this post (X bills per post), for budgets and reports.
    Column("cost", Float, nullable=False, default=0.0),
    Column("severity_rank", Integer, nullable=False, default=0),
    # A fan-out to many subscribers is queued in parts (one row each, sent by whichever
    # workers claim them); every other delivery is part 0, its notice's only row there.
    Column("part", Integer, nullable=False, default=0, server_default="0"),
    UniqueConstraint("notice_id", "channel", "part"),
    Index("ix_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    Index("ix_deliveries_thread_id_channel", "thread_id", "channel"),
)

delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(128)),
    Column("detail", Text),
)

# Pushed deliveries already accepted, by their `webhook-id`: a replay is not ingested twice.
push_receipts = Table(
    "push_receipts",
    metadata,
    # Receipts are per source: one source's webhook-id never hides another's notice.
    Column("source", String(64), primary_key=True),
    Column("webhook_id", String(256), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False, index=True),
)

# WebSub subscriptions of feed sources (one per source): Clarion is the subscriber.
websub = Table(
    "websub",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("hub", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # requested | active | denied | failed
    Column("lease_seconds", Integer),
    Column("lease_expires_at", UTCDateTime),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("verified_at", UTCDateTime),
    Column("last_error", Text),
    Column("received", BigInteger, nullable=False, default=0),
)


# API keys: the secret is never stored, only its SHA-256 (keys are 256 random bits, so a fast
# hash is enough). `scopes`: "read" or "read,write"; `tier`: "standard" | "public_service".
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", String(64), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
)


# --- The operator's desk ----------------------------------------------------------------------

# People who use the desk. Passwords are Argon2id hashes; a disabled user cannot log in and
# loses every session at once. Roles, each including the one before: viewer, editor,
# approver, admin.
users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
    Column("last_login_at", UTCDateTime),
)

# Desk sessions: the cookie holds a random token; only its SHA-256 is stored here, so a copy
# of the database lets no one in. Each session has its own CSRF token for forms.
desk_sessions = Table(
    "desk_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ip", String(64)),
    Column("user_agent", Text),
)

# Notices written on the desk, from draft to sent: a new alert, or an update, cancellation or
# correction of a thread. state: awaiting_approval | scheduled | sent | rejected | withdrawn |
# failed. `body` is the form as submitted (manual.NoticeIn); `notice_id` what it became.
drafts = Table(
    "drafts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("action", String(16), nullable=False),  # alert | update | cancel | correction
    Column("thread_id", BigInteger, ForeignKey("threads.id")),
    Column("body", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("headline", Text, nullable=False),
    Column("state", String(24), nullable=False, index=True),
    Column("author", String(64), nullable=False),
    Column("approver", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime),
    Column("send_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("notice_id", BigInteger, ForeignKey("notices.id")),
    Column("reason", Text),
)

# Saved compose templates ("Service disruption", "All clear"…): a name and the form's fields.
desk_templates = Table(
    "desk_templates",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("body", JSON, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Every action on the desk and its commands: who, what, on what, when, from where.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("actor", String(64), nullable=False),  # a username, or "cli:<user>" / "system"
    Column("action", String(32), nullable=False),
    Column("target", String(255)),
    Column("detail", Text),
    Column("ip", String(64)),
    Index("ix_audit_log_action_at", "action", "at"),
)

# Each configuration a Clarion process started with, when it differs from the one before: the
# audit log says what changed (keys only; secrets are references, never values).
config_history = Table(
    "config_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("host", String(255)),
)

# Limits shared by every worker and web replica (they hold across hosts on PostgreSQL):
# a token bucket per channel for the platform's documented write limit, and a pause when the
# platform itself said "slow down" (429 with Retry-After), so no other worker tries meanwhile.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refilled_at", UTCDateTime, nullable=False),
    Column("paused_until", UTCDateTime),
)

# The REST API's hourly windows, per client address or API key (fixed clock-hour windows).
api_usage = Table(
    "api_usage",
    metadata,
    Column("who", String(160), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)

# Credentials entered in the desk (a channel's new token after the old one was revoked):
# encrypted with Fernet under `[clarion] secret_keys` (MultiFernet: newest key first, older
# keys still read, `clarion secrets rotate` re-encrypts). They replace the config's reference
# for that field. The plaintext is never stored, shown or logged.
channel_credentials = Table(
    "channel_credentials",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- The fediverse: Clarion's own ActivityPub accounts -----------------------------------------

# Each account's key pair, made once. The private key signs every delivery; keep the database
# as safe as the key (see docs/fediverse.md for rotating it).
fediverse_keys = Table(
    "fediverse_keys",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("private_key", Text, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Who follows each account, and where to deliver (their server's shared inbox when it has one).
# state: accepted | pending (held for approval) | dropped (its inbox failed for days).
fediverse_followers = Table(
    "fediverse_followers",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("actor", String(512), primary_key=True),
    Column("inbox", Text, nullable=False),
    Column("shared_inbox", Text),
    Column("state", String(16), nullable=False),
    Column("follow_id", Text),  # their Follow activity's id (an Accept names it)
    Column("created_at", UTCDateTime, nullable=False),
    Column("failing_since", UTCDateTime),
    Column("last_error", Text),
)

# Other servers' public keys, fetched to verify their signatures (refetched when one fails).
fediverse_remote_keys = Table(
    "fediverse_remote_keys",
    metadata,
    Column("key_id", String(512), primary_key=True),
    Column("actor", String(512), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),
)


# --- Direct subscriptions (Web Push, e-mail) ---------------------------------------------------
# What a subscriber is, kept to what delivery needs (docs/subscriptions.md): where to send
# (a push endpoint and its two keys, or an address), what they asked for, and the secret of
# their management link, stored only as its SHA-256.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    # The one-click unsubscribe link's secret (RFC 8058), in every mail: kept as it is, since
    # each mail must carry it; it can do nothing but unsubscribe.
    Column("unsubscribe_key", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # webpush | email
    Column("state", String(16), nullable=False),  # pending | active | paused
    Column("address", Text, nullable=False),  # the push endpoint, or the e-mail address
    Column("address_key", String(64), nullable=False, index=True),  # SHA-256 of it, folded
    Column("p256dh", String(128)),  # the browser's public key (base64url), Web Push only
    Column("auth", String(64)),  # its authentication secret (base64url), Web Push only
    Column("interests", JSON, nullable=False),  # what they asked for, as they asked it
    Column("min_severity", String(16)),
    Column("sources", JSON),  # None: every source
    Column("languages", JSON),  # None: every language
    Column("confirm_hash", String(64)),  # e-mail: SHA-256 of the confirmation link's secret
    Column("confirm_sent_at", UTCDateTime),
    Column("paused_reason", Text),
    Column("failures", Integer, nullable=False, default=0),  # consecutive
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("confirmed_at", UTCDateTime),
    Column("last_sent_at", UTCDateTime),
)

# One row per term of each interest: an interest matches a notice when all its terms are among
# the notice's terms (`notice_terms`), `needed` of them.
subscription_terms = Table(
    "subscription_terms",
    metadata,
    Column("subscription_id", BigInteger, ForeignKey("subscriptions.id"), primary_key=True),
    Column("interest", Integer, primary_key=True),
    Column("term", String(255), primary_key=True),
    Column("needed", Integer, nullable=False),
    Index("ix_subscription_terms_term", "term", "subscription_id"),
)

# A point (the browser's location, or a click on the map), matched against alert polygons.
subscription_points = Table(
    "subscription_points",
    metadata,
    Column("subscription_id", BigInteger, ForeignKey("subscriptions.id"), primary_key=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Index("ix_subscription_points_lat_lon", "lat", "lon"),
)

# Who a story reaches on a subscriber channel, fixed as its versions are ingested: an update or
# a cancellation goes to exactly these.
subscription_reach = Table(
    "subscription_reach",
    metadata,
    Column("thread_id", BigInteger, ForeignKey("threads.id"), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("subscription_id", BigInteger, ForeignKey("subscriptions.id"), primary_key=True),
    Column("notice_id", BigInteger, nullable=False),  # the version that first reached them
    Index("ix_subscription_reach_subscription_id", "subscription_id"),
)

# Each subscriber a delivery has been sent to (or found gone): a retry of the delivery goes only
# to the others, and a subscriber never gets one version twice.
subscription_sends = Table(
    "subscription_sends",
    metadata,
    Column("delivery_id", String(36), ForeignKey("deliveries.id"), primary_key=True),
    Column("subscription_id", BigInteger, primary_key=True),
    Column("state", String(16), nullable=False),  # sent | gone | refused
    Column("at", UTCDateTime, nullable=False),
    Column("detail", Text),
)
