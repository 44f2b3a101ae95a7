"""The schema's history: the SQL of every migration, frozen.

Migrations are history. A released one is never edited, only followed by a new one
(:mod:`pgusers._core.migrations` runs them in order, under an advisory lock): a
database made by any earlier version must come out of them exactly as a new one
does. Templates name the schema as ``{schema}``, filled in by
:func:`pgusers._core.sql.render`.
"""

from typing import Final

SCHEMA_VERSION_TABLE: Final = "SELECT to_regclass(%s) IS NOT NULL"
READ_SCHEMA_VERSION: Final = "SELECT version FROM {schema}.schema_version"
CREATE_SCHEMA: Final = (
    # The schema may exist already, created by an administrator for pgusers.
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE {schema}.schema_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version   integer NOT NULL
    )""",
    "INSERT INTO {schema}.schema_version (version) VALUES (0)",
)
WRITE_SCHEMA_VERSION: Final = "UPDATE {schema}.schema_version SET version = %s"


MIGRATION_1: Final = """
    CREATE TABLE {schema}.users (
        userid        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username      text NOT NULL,
        username_key  text COLLATE "C" NOT NULL,
        email         text NOT NULL,
        email_key     text COLLATE "C" NOT NULL,
        password_hash text NOT NULL,
        admin         boolean NOT NULL DEFAULT false,
        extra_data    jsonb,
        created_at    timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT users_username_key UNIQUE (username_key),
        CONSTRAINT users_email_key UNIQUE (email_key)
    );
    CREATE TABLE {schema}.sessions (
        key         text PRIMARY KEY,
        userid      bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        expires_at  timestamptz NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        extra_data  jsonb
    );
    CREATE INDEX sessions_userid_idx ON {schema}.sessions (userid);
    CREATE INDEX sessions_expires_at_idx ON {schema}.sessions (expires_at);
    CREATE TABLE {schema}.settings (
        singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        session_ttl double precision NOT NULL DEFAULT 864000 CHECK (session_ttl > 0)
    );
    INSERT INTO {schema}.settings DEFAULT VALUES;
"""

# Version 2: lookup keys become NFKC_Casefold, usernames gain a unique confusables
# skeleton, and sessions carry the generation of their user and of the userspace
# (see OPEN_SESSION). The unique constraints are dropped while the keys are
# recomputed, and added again only when no two users collide.
MIGRATION_2_BEGIN: Final = """
    ALTER TABLE {schema}.users
        ADD COLUMN username_skeleton text COLLATE "C",
        ADD COLUMN generation bigint NOT NULL DEFAULT 0,
        DROP CONSTRAINT users_username_key,
        DROP CONSTRAINT users_email_key;
    ALTER TABLE {schema}.sessions ADD COLUMN generation bigint NOT NULL DEFAULT 0;
    ALTER TABLE {schema}.settings ADD COLUMN generation bigint NOT NULL DEFAULT 0;
"""
USERS_PAGE: Final = """
    SELECT userid, username, email FROM {schema}.users
    WHERE userid > %s ORDER BY userid LIMIT %s
"""
SET_USER_KEYS: Final = """
    UPDATE {schema}.users u
    SET username_key = v.username_key, email_key = v.email_key, username_skeleton = v.skeleton
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])
        AS v(userid, username_key, email_key, skeleton)
    WHERE u.userid = v.userid
"""
KEY_COLLISIONS: Final = """
    SELECT field, string_agg(userid::text, ', ' ORDER BY userid)
    FROM (
        SELECT 'username' AS field, username_key AS key, userid FROM {schema}.users
        UNION ALL SELECT 'email', email_key, userid FROM {schema}.users
        UNION ALL SELECT 'look-alike username', username_skeleton, userid FROM {schema}.users
    ) AS k
    GROUP BY field, key HAVING count(*) > 1
    ORDER BY min(userid), field
    LIMIT 20
"""
MIGRATION_2_END: Final = """
    ALTER TABLE {schema}.users
        ALTER COLUMN username_skeleton SET NOT NULL,
        ADD CONSTRAINT users_username_key UNIQUE (username_key),
        ADD CONSTRAINT users_email_key UNIQUE (email_key),
        ADD CONSTRAINT users_username_skeleton_key UNIQUE (username_skeleton);
"""
REKEY_BATCH: Final = 5000

# Version 3: accounts can be disabled and their email verified; one-time tokens for
# password resets and email verification, kept only as SHA-256 digests; login
# failures counted per login name and per source, with the policy in settings;
# sessions record the source and user agent of their login.
MIGRATION_3: Final = """
    ALTER TABLE {schema}.users
        ADD COLUMN email_verified boolean NOT NULL DEFAULT false,
        ADD COLUMN disabled boolean NOT NULL DEFAULT false;
    ALTER TABLE {schema}.sessions
        ADD COLUMN source text,
        ADD COLUMN user_agent text;
    ALTER TABLE {schema}.settings
        ADD COLUMN free_failures integer NOT NULL DEFAULT 5 CHECK (free_failures >= 0),
        ADD COLUMN max_backoff double precision NOT NULL DEFAULT 900 CHECK (max_backoff > 0),
        ADD COLUMN source_limit integer NOT NULL DEFAULT 50 CHECK (source_limit > 0),
        ADD COLUMN source_window double precision NOT NULL DEFAULT 600
            CHECK (source_window > 0),
        ADD COLUMN source_block double precision NOT NULL DEFAULT 600 CHECK (source_block > 0);
    CREATE TABLE {schema}.login_failures (
        subject       text COLLATE "C" PRIMARY KEY,
        failures      integer NOT NULL,
        window_start  timestamptz NOT NULL,
        last_at       timestamptz NOT NULL,
        blocked_until timestamptz
    );
    CREATE INDEX login_failures_last_at_idx ON {schema}.login_failures (last_at);
    CREATE TABLE {schema}.tokens (
        digest      bytea PRIMARY KEY,
        userid      bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        purpose     text NOT NULL
                    CHECK (purpose IN ('reset_password', 'verify_email', 'change_email')),
        email       text,
        email_key   text COLLATE "C",
        expires_at  timestamptz NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX tokens_userid_idx ON {schema}.tokens (userid, purpose);
"""

# Version 4: sessions gain a public id (random, never derived from the key) and the
# time they were last seen; the userspace gains a maximum session age, a choice of how
# keys are stored (as given, or as SHA-256 digests) and an audit trail with a
# retention period in days. events.userid has no foreign key: a deleted user's
# events stay.
MIGRATION_4: Final = """
    ALTER TABLE {schema}.sessions
        ADD COLUMN session_id text COLLATE "C" NOT NULL DEFAULT translate(encode(
            substr(uuid_send(gen_random_uuid()), 1, 6)
                || substr(uuid_send(gen_random_uuid()), 1, 6),
            'base64'), '+/', '-_'),
        ADD COLUMN last_seen_at timestamptz;
    CREATE UNIQUE INDEX sessions_session_id_key ON {schema}.sessions (session_id);
    CREATE INDEX sessions_created_at_idx ON {schema}.sessions (created_at);
    ALTER TABLE {schema}.settings
        ADD COLUMN session_max_age double precision CHECK (session_max_age > 0),
        ADD COLUMN key_storage text NOT NULL DEFAULT 'plain'
            CHECK (key_storage IN ('plain', 'hashed')),
        ADD COLUMN event_retention double precision DEFAULT 90 CHECK (event_retention > 0);
    CREATE TABLE {schema}.events (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at          timestamptz NOT NULL,
        kind        text COLLATE "C" NOT NULL,
        userid      bigint,
        actor       text,
        source      text,
        session_id  text,
        detail      jsonb NOT NULL
    );
    CREATE INDEX events_at_idx ON {schema}.events (at);
    CREATE INDEX events_userid_idx ON {schema}.events (userid, id);
"""

# Version 5: sessions imported from pgusers 0.9 (legacy keys, which were
# predictable) never outlive their imported expiry (ends_at); users whose hash is
# still 0.9's PBKDF2 are found through a partial index, so a login can tell at once
# whether any remain; each import records that it ran.
MIGRATION_5: Final = """
    ALTER TABLE {schema}.sessions
        ADD COLUMN ends_at timestamptz,
        ADD COLUMN legacy boolean NOT NULL DEFAULT false;
    CREATE INDEX users_legacy_hash_idx ON {schema}.users (userid)
        WHERE starts_with(password_hash, '$pbkdf2-sha512$');
    CREATE TABLE {schema}.legacy_imports (
        from_schema text PRIMARY KEY,
        at          timestamptz NOT NULL,
        users       bigint NOT NULL,
        sessions    bigint NOT NULL,
        report      jsonb NOT NULL
    );
"""

# Version 6: API keys for the HTTP service, kept only as SHA-256 digests; a key is
# revoked, never deleted, so the audit trail's key ids keep their meaning.
MIGRATION_6: Final = """
    CREATE TABLE {schema}.api_keys (
        key_id     text COLLATE "C" PRIMARY KEY,
        digest     bytea NOT NULL UNIQUE,
        name       text NOT NULL,
        scope      text NOT NULL CHECK (scope IN ('admin', 'check')),
        created_at timestamptz NOT NULL,
        created_by text,
        revoked_at timestamptz
    );
"""

# Version 7: check_key's two writes, as functions its statement calls only when one
# is due. A statement that carries an UPDATE or a DELETE pays for it on every call,
# even when it changes nothing (about 0.02 ms of the server's time here); a plain
# SELECT that calls one of these in a CASE pays nothing until the CASE picks it.
# The slide does not wait for the WAL to reach the disk: a crash can lose the last
# slides, which only makes sessions end a little early.
MIGRATION_7: Final = """
    CREATE FUNCTION {schema}.slide_session(session_key text, expires timestamptz,
                                           seen timestamptz)
        RETURNS boolean LANGUAGE sql VOLATILE AS {slide};
    CREATE FUNCTION {schema}.remove_session(session_key text)
        RETURNS boolean LANGUAGE sql VOLATILE AS {remove};
"""
# The functions' bodies, given to CREATE FUNCTION as string literals rather than
# dollar-quoted, so that no schema name (one holding "$$" is allowed) can end one.
SLIDE_SESSION: Final = """
    UPDATE {schema}.sessions SET expires_at = expires, last_seen_at = seen
    WHERE key = session_key AND set_config('synchronous_commit', 'off', true) IS NOT NULL
    RETURNING true
"""
REMOVE_SESSION: Final = "DELETE FROM {schema}.sessions WHERE key = session_key RETURNING true"

# Version 8: a user has at most sessions_per_user sessions (NULL: no limit), a login
# past it ending the oldest; failed logins of names that match no user are counted
# under a digest keyed with failure_key (such a name is often a password typed into
# the wrong box); throttled attempts are recorded at most once a minute per name and
# source (an index finds the last); and an API key acts with the current rights of
# the user who made it
# (maker_userid; NULL for a key the operator made on the command line). Keys made
# before are given their maker from the actor that made them: a user's session, the
# console, or another key (whose maker it inherits).
MIGRATION_8: Final = """
    ALTER TABLE {schema}.api_keys ADD COLUMN maker_userid bigint;
    UPDATE {schema}.api_keys
    SET maker_userid = substring(created_by FROM '^(?:console:)?user:([0-9]{{1,18}})$')::bigint;
    UPDATE {schema}.api_keys k SET maker_userid = p.maker_userid
    FROM {schema}.api_keys p WHERE k.created_by = 'apikey:' || p.key_id;
    ALTER TABLE {schema}.settings
        ADD COLUMN sessions_per_user integer DEFAULT 100 CHECK (sessions_per_user > 0),
        ADD COLUMN failure_key bytea NOT NULL
            DEFAULT sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
    CREATE INDEX events_throttled_idx ON {schema}.events (at) WHERE kind = 'login.throttled';
"""

# Version 9: second factors. A factor is a TOTP seed (sealed under the application's
# secret key, see pgusers._core.sealing) with the last time step it accepted, so a
# code is accepted once; recovery codes are kept as digests, each usable once. A
# login whose password was right for a user with a factor leaves a ticket (a digest,
# with the password hash's digest and the generations it was issued under), which
# one factor answer turns into a session. Sessions record how and when their user
# last proved who they are (NULL: when the session was opened).
MIGRATION_9: Final = """
    CREATE TABLE {schema}.factors (
        factor_id    text COLLATE "C" PRIMARY KEY,
        userid       bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        kind         text NOT NULL CHECK (kind IN ('totp')),
        label        text,
        secret       text NOT NULL,
        created_at   timestamptz NOT NULL,
        confirmed_at timestamptz,
        last_used_at timestamptz,
        last_step    bigint
    );
    CREATE INDEX factors_userid_idx ON {schema}.factors (userid);
    CREATE TABLE {schema}.recovery_codes (
        digest     bytea PRIMARY KEY,
        userid     bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX recovery_codes_userid_idx ON {schema}.recovery_codes (userid);
    CREATE TABLE {schema}.login_tickets (
        digest          bytea PRIMARY KEY,
        userid          bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        name_key        text COLLATE "C" NOT NULL,
        password_digest bytea NOT NULL,
        generation      bigint NOT NULL,
        expires_at      timestamptz NOT NULL,
        attempts        integer NOT NULL DEFAULT 0,
        source          text,
        user_agent      text,
        extra_data      jsonb
    );
    CREATE INDEX login_tickets_userid_idx ON {schema}.login_tickets (userid);
    CREATE INDEX login_tickets_expires_at_idx ON {schema}.login_tickets (expires_at);
    ALTER TABLE {schema}.sessions
        ADD COLUMN auth_methods text[] NOT NULL DEFAULT '{{password}}',
        ADD COLUMN authenticated_at timestamptz;
"""

# Version 10: a password policy, in the settings: a shortest and a longest length
# (NULL: no rule beyond pgusers' own bounds) and the breached-password check.
MIGRATION_10: Final = """
    ALTER TABLE {schema}.settings
        ADD COLUMN password_min_length integer CHECK (password_min_length > 0),
        ADD COLUMN password_max_length integer CHECK (password_max_length > 0),
        ADD COLUMN breached_check text NOT NULL DEFAULT 'off'
            CHECK (breached_check IN ('off', 'best_effort', 'required'));
"""

# Version 11: the login policy may require a second factor of every administrator.
MIGRATION_11: Final = """
    ALTER TABLE {schema}.settings ADD COLUMN admins_need_mfa boolean NOT NULL DEFAULT false;
"""

# Version 12: passkeys (WebAuthn). A passkey is a factor of kind 'passkey' holding a
# credential's id, public key, signature count and transports, all public; one whose
# count went backwards is flagged as cloned and refused until an administrator
# clears the flag. Each user gets a random handle for authenticators to store (never
# the userid). A challenge is kept until it is answered once or expires, bound to
# its purpose and, when known, its user, the session asking or the login ticket.
# The relying party lives in the settings.
MIGRATION_12: Final = """
    ALTER TABLE {schema}.factors
        DROP CONSTRAINT factors_kind_check,
        ADD CONSTRAINT factors_kind_check CHECK (kind IN ('totp', 'passkey')),
        ALTER COLUMN secret DROP NOT NULL,
        ADD COLUMN credential_id bytea UNIQUE,
        ADD COLUMN public_key bytea,
        ADD COLUMN sign_count bigint,
        ADD COLUMN transports text[],
        ADD COLUMN cloned_at timestamptz;
    ALTER TABLE {schema}.users ADD COLUMN passkey_handle bytea UNIQUE;
    CREATE TABLE {schema}.passkey_challenges (
        challenge_id text COLLATE "C" PRIMARY KEY,
        challenge    bytea NOT NULL,
        purpose      text NOT NULL CHECK (purpose IN ('register', 'login', 'second_factor')),
        userid       bigint REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        session_id   text,
        ticket       bytea,
        label        text,
        source       text,
        expires_at   timestamptz NOT NULL
    );
    CREATE INDEX passkey_challenges_expires_at_idx ON {schema}.passkey_challenges (expires_at);
    CREATE INDEX passkey_challenges_source_idx ON {schema}.passkey_challenges (source);
    ALTER TABLE {schema}.settings
        ADD COLUMN webauthn_rp_id text,
        ADD COLUMN webauthn_rp_name text,
        ADD COLUMN webauthn_origins text[];
"""

# Version 13: roles, permissions and organizations. A role is a name and the
# permissions it grants (plain strings the application chooses), also kept as one
# space-separated text, which the per-request check reads without unnesting. A grant
# gives a user a role everywhere (org_id NULL) or in one organization, of which the
# user must then be a member: leaving it ends the grants there.
MIGRATION_13: Final = """
    CREATE TABLE {schema}.roles (
        name            text COLLATE "C" PRIMARY KEY,
        permissions     text[] NOT NULL,
        permission_text text NOT NULL,
        description     text,
        created_at      timestamptz NOT NULL
    );
    CREATE TABLE {schema}.orgs (
        org_id     bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        slug       text COLLATE "C" NOT NULL UNIQUE,
        name       text NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE TABLE {schema}.members (
        org_id    bigint NOT NULL REFERENCES {schema}.orgs (org_id) ON DELETE CASCADE,
        userid    bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        joined_at timestamptz NOT NULL,
        PRIMARY KEY (org_id, userid)
    );
    CREATE INDEX members_userid_idx ON {schema}.members (userid);
    CREATE TABLE {schema}.grants (
        userid     bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        role       text COLLATE "C" NOT NULL REFERENCES {schema}.roles (name) ON DELETE CASCADE,
        org_id     bigint,
        granted_at timestamptz NOT NULL,
        FOREIGN KEY (org_id, userid) REFERENCES {schema}.members (org_id, userid)
            ON DELETE CASCADE
    );
    CREATE UNIQUE INDEX grants_key ON {schema}.grants (userid, role, org_id) NULLS NOT DISTINCT;
    CREATE INDEX grants_role_idx ON {schema}.grants (role, org_id);
"""

# Version 14: what row-level security policies in the application's own tables read:
# the user, organization and permissions that authorize() set for the current
# transaction (NULL, NULL and false outside one it authorized).
MIGRATION_14: Final = """
    CREATE FUNCTION {schema}.current_userid() RETURNS bigint
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT nullif(current_setting('pgusers.userid', true), '')::bigint $$;
    CREATE FUNCTION {schema}.current_org() RETURNS bigint
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT nullif(current_setting('pgusers.org_id', true), '')::bigint $$;
    CREATE FUNCTION {schema}.has_permission(permission text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT coalesce(permission = ANY (string_to_array(
                  nullif(current_setting('pgusers.permissions', true), ''), ' ')), false) $$;
"""

# Version 15: invitations to organizations are one-time tokens: made by a user (the
# token's userid), for an organization and a role there, to an address (accepted by
# a user whose verified address it is) or to anyone with the link.
MIGRATION_15: Final = """
    ALTER TABLE {schema}.tokens
        DROP CONSTRAINT tokens_purpose_check,
        ADD CONSTRAINT tokens_purpose_check
            CHECK (purpose IN ('reset_password', 'verify_email', 'change_email', 'invite')),
        ADD COLUMN org_id bigint REFERENCES {schema}.orgs (org_id) ON DELETE CASCADE,
        ADD COLUMN role text COLLATE "C" REFERENCES {schema}.roles (name) ON DELETE CASCADE,
        ADD COLUMN open_to_anyone boolean NOT NULL DEFAULT false;
"""

# Version 16: each user's roles and permissions, everywhere and in each organization,
# kept summed up in one row per place (the roles' names and the union of their
# permissions, each space-separated and sorted), so that check_session reads one row
# by its key instead of joining grants to roles. Triggers keep the rows exact: a
# grant made or ended (by any statement, cascades included), or a role's permissions
# changed, sums up again the places it touches, each under a lock on its user's row so
# that two transactions granting to one user at once cannot lose one of the grants
# (FOR NO KEY UPDATE: the grants' foreign key already holds FOR KEY SHARE on that row,
# which FOR UPDATE would wait for, each transaction for the other's).
MIGRATION_16: Final = """
    CREATE TABLE {schema}.grant_sums (
        userid      bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        org_id      bigint REFERENCES {schema}.orgs (org_id) ON DELETE CASCADE,
        roles       text NOT NULL,
        permissions text NOT NULL
    );
    CREATE UNIQUE INDEX grant_sums_key ON {schema}.grant_sums (userid, org_id)
        NULLS NOT DISTINCT;
    CREATE FUNCTION {schema}.sum_grants(who bigint, place bigint) RETURNS void
        LANGUAGE plpgsql VOLATILE AS {sum_grants};
    CREATE FUNCTION {schema}.grants_changed() RETURNS trigger
        LANGUAGE plpgsql AS {grants_changed};
    CREATE TRIGGER grants_summed AFTER INSERT OR DELETE ON {schema}.grants
        FOR EACH ROW EXECUTE FUNCTION {schema}.grants_changed();
    CREATE FUNCTION {schema}.role_changed() RETURNS trigger
        LANGUAGE plpgsql AS {role_changed};
    CREATE TRIGGER role_summed AFTER UPDATE OF permissions ON {schema}.roles
        FOR EACH ROW WHEN (OLD.permissions IS DISTINCT FROM NEW.permissions)
        EXECUTE FUNCTION {schema}.role_changed();
    INSERT INTO {schema}.grant_sums (userid, org_id, roles, permissions)
    SELECT g.userid, g.org_id, string_agg(DISTINCT g.role, ' ' ORDER BY g.role),
           coalesce((SELECT string_agg(DISTINCT p COLLATE "C", ' ' ORDER BY p COLLATE "C")
                     FROM {schema}.grants h
                     JOIN {schema}.roles r ON r.name = h.role
                     CROSS JOIN unnest(r.permissions) AS p
                     WHERE h.userid = g.userid AND h.org_id IS NOT DISTINCT FROM g.org_id), '')
    FROM {schema}.grants g GROUP BY g.userid, g.org_id;
"""
# The bodies, given as string literals (see MIGRATION_7).
SUM_GRANTS: Final = """
    BEGIN
        PERFORM 1 FROM {schema}.users WHERE userid = who FOR NO KEY UPDATE;
        DELETE FROM {schema}.grant_sums WHERE userid = who AND org_id IS NOT DISTINCT FROM place;
        INSERT INTO {schema}.grant_sums (userid, org_id, roles, permissions)
        SELECT who, place, string_agg(DISTINCT g.role, ' ' ORDER BY g.role),
               coalesce((SELECT string_agg(DISTINCT p COLLATE "C", ' ' ORDER BY p COLLATE "C")
                         FROM {schema}.grants h
                         JOIN {schema}.roles r ON r.name = h.role
                         CROSS JOIN unnest(r.permissions) AS p
                         WHERE h.userid = who AND h.org_id IS NOT DISTINCT FROM place), '')
        FROM {schema}.grants g
        WHERE g.userid = who AND g.org_id IS NOT DISTINCT FROM place
        HAVING count(*) > 0;
    END
"""
GRANTS_CHANGED: Final = """
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM {schema}.sum_grants(OLD.userid, OLD.org_id);
        ELSE
            PERFORM {schema}.sum_grants(NEW.userid, NEW.org_id);
        END IF;
        RETURN NULL;
    END
"""
ROLE_CHANGED: Final = """
    BEGIN
        PERFORM {schema}.sum_grants(g.userid, g.org_id)
        FROM (SELECT DISTINCT userid, org_id FROM {schema}.grants WHERE role = NEW.name) g;
        RETURN NULL;
    END
"""

# Version 17: signing in through other sites. A provider is a userspace setting (its
# client secret sealed under the secret key); an identity is a provider's subject,
# linked to one user (a user has at most one per provider); a sign-in under way keeps
# its state's digest, its PKCE verifier and nonce (sealed), the redirect URI and, when
# it links, the user and session asking. A login ticket remembers the first step's
# method (a password, or a provider). A user made by a provider has no password: the
# hash is '!' and random text, which no password verifies. A trigger refuses to remove
# a user's last way to sign in (a password, a passkey or an identity), under a lock on
# the user's row so that two removals at once cannot each leave the other's way.
MIGRATION_17: Final = """
    CREATE TABLE {schema}.identity_providers (
        name                   text COLLATE "C" PRIMARY KEY,
        kind                   text NOT NULL CHECK (kind IN ('oidc', 'github')),
        client_id              text NOT NULL,
        client_secret          text NOT NULL,
        discovery_url          text,
        scopes                 text[] NOT NULL,
        link_by_verified_email boolean NOT NULL DEFAULT false,
        trusted_for_mfa        boolean NOT NULL DEFAULT false,
        allow_signup           boolean NOT NULL DEFAULT true,
        keep_claims            text[] NOT NULL DEFAULT '{{}}',
        keep_tokens            boolean NOT NULL DEFAULT false,
        created_at             timestamptz NOT NULL
    );
    CREATE TABLE {schema}.identities (
        provider       text COLLATE "C" NOT NULL
                           REFERENCES {schema}.identity_providers (name) ON DELETE CASCADE,
        subject        text COLLATE "C" NOT NULL,
        userid         bigint NOT NULL REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        email          text,
        email_verified boolean NOT NULL DEFAULT false,
        claims         jsonb NOT NULL DEFAULT '{{}}',
        tokens         text,
        linked_at      timestamptz NOT NULL,
        last_used_at   timestamptz,
        PRIMARY KEY (provider, subject),
        CONSTRAINT identities_one_per_provider UNIQUE (userid, provider)
    );
    CREATE TABLE {schema}.external_logins (
        state        bytea PRIMARY KEY,
        provider     text COLLATE "C" NOT NULL
                         REFERENCES {schema}.identity_providers (name) ON DELETE CASCADE,
        redirect_uri text NOT NULL,
        secrets      text NOT NULL,
        userid       bigint REFERENCES {schema}.users (userid) ON DELETE CASCADE,
        session_id   text,
        source       text,
        expires_at   timestamptz NOT NULL
    );
    CREATE INDEX external_logins_expires_at_idx ON {schema}.external_logins (expires_at);
    CREATE INDEX external_logins_source_idx ON {schema}.external_logins (source);
    ALTER TABLE {schema}.login_tickets
        ADD COLUMN first_method text NOT NULL DEFAULT 'password';
    CREATE FUNCTION {schema}.keep_a_way_in() RETURNS trigger
        LANGUAGE plpgsql AS {keep_a_way_in};
    CREATE TRIGGER identities_keep_a_way_in AFTER DELETE ON {schema}.identities
        FOR EACH ROW EXECUTE FUNCTION {schema}.keep_a_way_in();
    CREATE TRIGGER passkeys_keep_a_way_in AFTER DELETE ON {schema}.factors
        FOR EACH ROW WHEN (OLD.kind = 'passkey' AND OLD.confirmed_at IS NOT NULL)
        EXECUTE FUNCTION {schema}.keep_a_way_in();
"""
LAST_WAY_IN: Final = "pgusers: the last way this user can sign in"
"""The message of the error that KEEP_A_WAY_IN raises."""
# The body, given as a string literal (see MIGRATION_7). Each statement in it sees
# what committed before it began, so the check after the lock sees a removal that
# another transaction made while this one waited.
KEEP_A_WAY_IN: Final = """
    BEGIN
        PERFORM 1 FROM {schema}.users WHERE userid = OLD.userid FOR NO KEY UPDATE;
        IF NOT FOUND THEN  -- the user is being deleted
            RETURN NULL;
        END IF;
        IF NOT EXISTS (
            SELECT 1 FROM {schema}.users u
            WHERE u.userid = OLD.userid AND NOT starts_with(u.password_hash, '!')
            UNION ALL
            SELECT 1 FROM {schema}.factors f
            WHERE f.userid = OLD.userid AND f.kind = 'passkey' AND f.confirmed_at IS NOT NULL
            UNION ALL
            SELECT 1 FROM {schema}.identities i WHERE i.userid = OLD.userid
        ) THEN
            RAISE EXCEPTION USING MESSAGE = {message};
        END IF;
        RETURN NULL;
    END
"""

# Version 18: what the userspace tells the world. The outbox holds each message to
# send, written by the statement whose change causes it: a mail (to an address, for a
# purpose whose template it names) or a webhook call (to a webhook, for an event). A
# mail that carries a token holds none: the worker issues it as it sends. A message is
# pending until a worker sends it (sent) or gives up after the attempts allowed
# (dead); a worker holds a message it took by moving its due time past the lease, so
# a worker that dies lets it fall due again. Mail settings are one row (the SMTP
# password sealed under the secret key); a webhook's signing secrets are sealed too.
# Sign-in by email: a token of purpose login_link also keeps the digest of a 6-digit
# code, tried with the address it went to.
MIGRATION_18: Final = """
    CREATE TABLE {schema}.outbox (
        id          text COLLATE "C" PRIMARY KEY,
        channel     text NOT NULL CHECK (channel IN ('mail', 'webhook')),
        purpose     text COLLATE "C" NOT NULL,
        userid      bigint,
        recipient   text NOT NULL,
        payload     jsonb NOT NULL,
        state       text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'dead')),
        attempts    integer NOT NULL DEFAULT 0,
        created_at  timestamptz NOT NULL,
        due_at      timestamptz NOT NULL,
        taken_by    text,
        sent_at     timestamptz,
        last_error  text
    );
    CREATE INDEX outbox_due_idx ON {schema}.outbox (due_at) WHERE state = 'pending';
    CREATE INDEX outbox_done_idx ON {schema}.outbox (created_at) WHERE state <> 'pending';
    CREATE INDEX outbox_recipient_idx ON {schema}.outbox (recipient, created_at)
        WHERE channel = 'mail';
    CREATE TABLE {schema}.mail_settings (
        singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        host          text NOT NULL,
        port          integer NOT NULL,
        security      text NOT NULL CHECK (security IN ('starttls', 'tls', 'none')),
        username      text,
        password      text,
        sender        text NOT NULL,
        base_url      text NOT NULL,
        app_name      text NOT NULL,
        per_recipient integer NOT NULL,
        new_device    boolean NOT NULL DEFAULT false,
        updated_at    timestamptz NOT NULL
    );
    CREATE TABLE {schema}.webhooks (
        id              text COLLATE "C" PRIMARY KEY,
        url             text NOT NULL,
        kinds           text[] NOT NULL,
        description     text,
        secret          text NOT NULL,
        previous_secret text,
        previous_until  timestamptz,
        created_at      timestamptz NOT NULL
    );
    ALTER TABLE {schema}.settings
        ADD COLUMN login_by_email boolean NOT NULL DEFAULT false,
        ADD COLUMN delivery_attempts integer NOT NULL DEFAULT 8
            CHECK (delivery_attempts BETWEEN 1 AND 100);
    ALTER TABLE {schema}.tokens
        DROP CONSTRAINT tokens_purpose_check,
        ADD CONSTRAINT tokens_purpose_check CHECK (purpose IN (
            'reset_password', 'verify_email', 'change_email', 'invite', 'login_link')),
        ADD COLUMN code bytea;
"""
