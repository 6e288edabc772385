-- berth schema, version 4: TLS certificates ordered over ACME, and the ACME accounts.
-- One certificate per host name for the whole fleet. The private keys sit in this
-- file, which berth creates 0600 in a 0700 directory (the API token's care); they
-- are never logged nor shown by the API.
CREATE TABLE certificates (
  host_name       TEXT PRIMARY KEY,
  certificate     TEXT NOT NULL,            -- PEM chain, leaf first
  private_key     TEXT NOT NULL,            -- PEM
  serial          TEXT NOT NULL,            -- normalised hex (upper case, no leading zeros)
  not_after       TEXT NOT NULL,            -- ISO 8601
  issued_at       TEXT NOT NULL,            -- when berth stored it
  renew_before_ms INTEGER NOT NULL          -- acme.renew_before when it was ordered (src/tls/plan.ts)
) STRICT;

CREATE TABLE acme_accounts (
  directory   TEXT PRIMARY KEY,
  private_key TEXT NOT NULL,                -- PEM, the account key
  url         TEXT,                         -- the account URL, once registered
  created_at  TEXT NOT NULL
) STRICT;
